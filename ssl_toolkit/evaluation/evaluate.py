"""``ssl eval``: score a trained run on a split of a features artifact.

A trained run or an export (TorchScript / ONNX) is opened as a localizer
(:mod:`ssl_toolkit.models.localize`) and run over the split in batches streamed from the
memmaps; its localizations and the labels are flattened to frames and scored with
every metric of :mod:`ssl_toolkit.analysis.metrics`, overall and per subset (D1/D2/D3 =
clips of maximum polyphony 1/2/3). Detection is :func:`ssl_toolkit.models.localize.detect`
and invalid slots are never scored. The eval artifact (layout in
docs/ARCHITECTURE.md) holds ``predictions.npz``, ``metrics.json``, ``metrics.csv``
and optionally ``plots/`` and ``dcase/`` (the detections as DCASE result files, one
``<clip_id>.csv`` per clip: :mod:`ssl_toolkit.analysis.dcase_csv`). Every method gets the
class-agnostic metrics; a localizer with classes (a class-aware multi-ACCDOA model, DCASE
result files) scored on features with classes also gets the official class-dependent DCASE
metrics (``*_cls`` keys: :func:`ssl_toolkit.analysis.metrics.class_aware_seld`,
:func:`class_aware`). Classical baselines
(:mod:`ssl_toolkit.evaluation.baselines`) write the same artifact through :func:`write_eval`, and
so does :func:`evaluate_dcase_csv`, which scores DCASE result files made by any system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import density, metrics, thresholds
from ..analysis.frames import Frames, predict_split
from ..core.artifacts import Manifest, build_artifact, read_manifest, write_json
from ..core.config import ConfigError, check_choices, check_finite, to_dict
from ..core.console import log as console_log
from ..core.console import warn as console_warn
from ..core.errors import UserError
from ..core.memory import check_batch
from ..features.spec import FeatureSpec
from ..features.store import SPLITS, FeatureSet, open_features

__all__ = [
    "EvalConfig",
    "class_aware",
    "evaluate_dcase_csv",
    "evaluate_run",
    "load_metrics",
    "score_predictions",
    "summary",
    "write_eval",
]

#: Keys of ``metrics.json`` that measure confidence scores (per subset, and top level): a
#: method without scores (``scored`` False: WTA variants, IE, classical baselines, DCASE
#: result files) never has them, whatever path wrote its eval (:func:`write_eval` drops
#: them), so reports show a dash rather than a number that measures something else.
CONFIDENCE_KEYS = ("ece", "ece_calibrated", "emd_deg_calibrated")
CONFIDENCE_EXTRAS = ("thresholds_val", "calibration_val")

#: Feature parameters that must agree between the run's training features and the data.
_MUST_MATCH = ("type", "fs", "hop_length", "n_fft", "format", "n_channels")


@dataclass(frozen=True)
class EvalConfig:
    """Options of ``ssl eval``.

    Attributes:
        split: the split scored (``train``, ``val``, ``test``).
        threshold: detection threshold; None takes the run's (0.5 by default).
        learn_threshold: learn the threshold on the ``val`` split by SGL-Thresh.
        batch_size: chunks per forward pass.
        segment_s: segment length of the DCASE detection metrics, seconds.
        plots: write PNG plots.
        calibrate: also predict the ``val`` split to choose the vMF kappa and to
            compare thresholds (skipped when the features have no ``val`` chunk).
        dcase_out: also write the detections as DCASE result files, ``dcase/<clip_id>.csv``
            per clip of the split (100 ms label frames, each from its middle feature frame;
            docs/ARCHITECTURE.md).
    """

    CHOICES = {"split": SPLITS}  # checked and matched up to case by core.config

    split: str = "test"
    threshold: float | None = None
    learn_threshold: bool = False
    batch_size: int = 32
    segment_s: float = 1.0
    plots: bool = False
    calibrate: bool = True
    dcase_out: bool = False

    def validate(self) -> None:
        check_finite(self)
        check_choices(self)
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.threshold is not None and self.learn_threshold:
            raise ConfigError("give either --threshold or --learn-threshold, not both")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.segment_s <= 0:
            raise ConfigError(f"segment_s must be > 0, got {self.segment_s}")


def score_predictions(
    fr: Frames,
    threshold: float,
    seg_frames: int,
    scored: bool,
    kappa=None,
    temperature=None,
    counts: bool | None = None,
    n_classes: int | None = None,
    merge_deg: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Every metric per subset (``D1``, ``D2``, ``D3``, ``overall``).

    Detection is :func:`~ssl_toolkit.models.localize.detections` at ``threshold`` after
    merging the hypotheses within ``merge_deg`` of a more confident one (0: none); the
    detection metrics (Hungarian error, frame recall, DCASE) score the detected
    directions, the distribution metrics (oracle, EMD, calibration) the hypotheses
    themselves. Invalid slots are ignored by every metric. A method without scores (WTA
    variants, IE, a baseline given the true count) estimates no source count, so its frame recalls
    are NaN rather than a misleading number; ``counts`` says otherwise for a method that
    has no scores but whose detections are its estimated sources (DCASE result files).

    Args:
        fr: the frames; threshold: detection threshold; seg_frames: frames per DCASE
            segment; scored: whether the method has confidence scores; kappa: optional
            ``(mixture, voronoi)`` vMF concentrations for the density scores;
            temperature: a confidence temperature fitted on val (scored methods): adds
            ``ece_calibrated`` and ``emd_deg_calibrated``; counts: whether the detections
            estimate the number of sources (frame recall reported); None: ``scored``;
            n_classes: the features' number of classes to also score class-aware with
            (``fr.classes`` and ``fr.target_classes`` needed; see :func:`class_aware`), adding
            the ``*_cls`` metrics; None: class-agnostic only.

    Scored methods also get ``ece``, the expected calibration error of the confidences as
    predictors of the winning hypotheses (:mod:`ssl_toolkit.analysis.calibration`); methods
    without scores get none of :data:`CONFIDENCE_KEYS`. Every method gets
    ``chance_oracle_deg`` beside ``oracle_deg``: the expected oracle error of K uniformly
    random directions on the same frames (:func:`~ssl_toolkit.analysis.metrics.chance_oracle_deg`,
    exact; K the method's).
    """
    from ..analysis import calibration
    from ..models.localize import detections

    det_hyps, detected = detections(fr.hyps, fr.conf, fr.valid, threshold, merge_deg)
    counts = scored if counts is None else counts
    winners = None
    if scored:  # calibration is about confidence scores
        winners = calibration.winner_labels(fr.hyps, fr.targets, fr.active, fr.valid)
    tempered = None
    if scored and temperature is not None:
        tempered = calibration.apply_temperature(fr.conf, temperature)
    seg = metrics.segment_ids(fr.clip_id, fr.frame, seg_frames)
    k = int(fr.hyps.shape[1])
    out = {}
    for name, m in metrics.subset_masks(fr.active, fr.subset).items():
        if not m.any():
            continue
        cls = {}
        if n_classes is not None:
            cls = {"pred_class": fr.classes[m], "target_class": fr.target_classes[m],
                   "n_classes": n_classes}  # fmt: skip
        res = metrics.all_metrics(
            fr.hyps[m], fr.conf[m], fr.targets[m], fr.active[m], detected[m], seg[m], threshold,
            valid=fr.valid[m], detected_hyps=det_hyps[m] if merge_deg else None, **cls,
        )  # fmt: skip
        res = _with_chance(res, metrics.chance_oracle_deg(k, fr.active[m]))
        if not counts:
            res["frame_recall"] = res["frame_recall_sum"] = float("nan")
        if scored:
            res["ece"] = calibration.reliability(fr.conf[m], winners[m], fr.valid[m])["ece"]
        if tempered is not None:
            res["ece_calibrated"] = calibration.reliability(tempered[m], winners[m], fr.valid[m])[
                "ece"
            ]
            res["emd_deg_calibrated"] = metrics.emd(
                fr.hyps[m], tempered[m], fr.targets[m], fr.active[m], fr.valid[m]
            )
        if kappa is not None:
            args = (fr.hyps[m], fr.conf[m], fr.targets[m], fr.active[m])
            res["nll_vmf"] = density.mixture_nll(*args, kappa[0], valid=fr.valid[m])
            res["nll_voronoi"] = density.voronoi_nll(*args, kappa[1], valid=fr.valid[m])
        out[name] = res
    return out


def _with_chance(res: dict[str, Any], chance: float) -> dict[str, Any]:
    """``res`` with ``chance_oracle_deg`` right after ``oracle_deg`` (the column order of
    ``metrics.csv``)."""
    out = {}
    for key, v in res.items():
        out[key] = v
        if key == "oracle_deg":
            out["chance_oracle_deg"] = chance
    return out


def class_aware(fr: Frames, n_classes: int | None, threshold: float,
                model_classes: int | None = None, warn=None) -> int | None:  # fmt: skip
    """The number of classes to score ``fr`` class-aware with, or None: class-agnostic only.

    Class-aware scoring needs classes on both sides: the localizer's (``fr.classes``) and
    the features' (``fr.target_classes`` and their ``n_classes``). Where both exist but do
    not fit together, it is skipped with one warning line (the class-agnostic metrics stay):
    a model of another number of classes than the features, a detection of a class outside
    ``0..n_classes - 1`` (or unknown, -1), an active target without a class.

    Args:
        fr: the frames scored; n_classes: the features' number of classes (None: none);
        threshold: the detection threshold; model_classes: the number of classes of a model
            whose slots have fixed classes (None: not such a model); warn: ``warn(line)``
            (default: a yellow line on stderr).
    """
    if fr.classes is None or fr.target_classes is None or n_classes is None:
        return None
    from ..models.localize import detect

    why = None
    pc = fr.classes[detect(fr.conf, fr.valid, threshold)]  # (D,) classes of the detections
    tc = fr.target_classes[np.asarray(fr.active, bool)]  # (A,)
    if model_classes is not None and model_classes != n_classes:
        why = f"the model tells {model_classes} classes apart, the features have {n_classes}"
    elif len(pc) and (pc.min() < 0 or pc.max() >= n_classes):
        bad = int(pc[(pc < 0) | (pc >= n_classes)][0])
        why = f"a detection has class {bad}, outside the features' 0..{n_classes - 1}"
    elif len(tc) and (tc.min() < 0 or tc.max() >= n_classes):
        bad = int(tc[(tc < 0) | (tc >= n_classes)][0])
        why = f"an active target has class {bad}, outside 0..{n_classes - 1}"
    if why is not None:
        (warn or console_warn)(f"class-aware metrics skipped ({why}); class-agnostic metrics only")
        return None
    return int(n_classes)


def write_eval(
    directory: Path,
    fr: Frames,
    method: str,
    threshold: float,
    scores: dict[str, dict[str, float]],
    scored: bool,
    merge_deg: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``predictions.npz``, ``metrics.json`` and ``metrics.csv`` into ``directory``.

    ``detected [N, K]`` in ``predictions.npz`` marks the detections; after a merge
    (``merge_deg`` > 0) their directions are ``detected_hyps [N, K, 3]`` (the merged slots),
    otherwise the hypotheses themselves.

    ``predictions.npz`` also holds ``classes [N, K]`` and ``target_classes [N, S]`` where
    ``fr`` has them (a localizer with classes; features with classes). For a method
    without scores (``scored`` False) the confidence metrics (:data:`CONFIDENCE_KEYS`,
    :data:`CONFIDENCE_EXTRAS`) are left out, whoever computed them."""
    from ..models.localize import detections

    if not scored:
        scores = {s: {key: v for key, v in d.items() if key not in CONFIDENCE_KEYS}
                  for s, d in scores.items()}  # fmt: skip
        extra = {key: v for key, v in extra.items() if key not in CONFIDENCE_EXTRAS}

    optional = {k: getattr(fr, k).astype(np.int64) for k in ("classes", "target_classes")
                if getattr(fr, k) is not None}  # fmt: skip
    det_hyps, detected = detections(fr.hyps, fr.conf, fr.valid, threshold, merge_deg)
    if merge_deg:
        optional["detected_hyps"] = det_hyps
    np.savez_compressed(
        directory / "predictions.npz",
        **optional,
        hyps=fr.hyps,
        conf=fr.conf,
        valid=fr.valid.astype(bool),
        targets=fr.targets,
        active=fr.active,
        clip_id=fr.clip_id.astype(str),
        frame=fr.frame.astype(np.int64),
        detected=detected,
        subset=fr.subset.astype(str),
    )
    k = int(fr.hyps.shape[1])
    doc = {"method": method, "K": k, "threshold": float(threshold), "scored": bool(scored)}
    if merge_deg:
        doc["merge_deg"] = float(merge_deg)
    doc.update(scores)
    doc.update(extra)
    write_json(directory / "metrics.json", doc)
    table = pd.DataFrame([{"subset": s, **v} for s, v in scores.items()])
    table.insert(0, "method", method)
    table.insert(1, "K", k)
    table.to_csv(directory / "metrics.csv", index=False)
    return doc


def _check_compatible(run: FeatureSpec | None, fs: FeatureSet, model=None, kind="run") -> None:
    """Refuse features computed otherwise than the run's (``None``: the run does not say),
    or of another array (:func:`check_same_array`)."""
    if model is not None:
        check_same_array(run, fs.spec, model, fs.manifest.path, kind)
    bad = [k for k in _MUST_MATCH if run is not None and getattr(run, k) != getattr(fs.spec, k)]
    if bad:
        k = bad[0]
        raise UserError(
            f"{fs.manifest.path} has {k}={getattr(fs.spec, k)!r} but the run was trained on "
            f"{k}={getattr(run, k)!r}: evaluate on features made with the run's feature parameters"
        )


def check_same_array(model: FeatureSpec | None, data: FeatureSpec, model_path, data_path,
                     kind: str = "run", warn=None) -> None:  # fmt: skip
    """Refuse features of another array than the model's, in one line naming both arrays;
    warn once per artifact where either side records none (made before arrays were
    recorded: unchecked, still usable).

    Raises:
        UserError: ``<kind> M was trained on <array>, features F are of <array>: ...``.
    """
    from ..features.spec import array_mismatch, warn_unknown_array

    warn_unknown_array(model, model_path, kind, warn)
    warn_unknown_array(data, data_path, "features", warn)
    both = array_mismatch(model, data)
    if both is not None:
        who = f"run {model_path}" if kind == "run" else f"the model of {kind} {model_path}"
        raise UserError(
            f"{who} was trained on the {both[0]}, features {data_path} are of the {both[1]}: "
            f"evaluate on features of the {kind}'s array"
        )


def _rows(fs: FeatureSet, split: str, what: str) -> np.ndarray:
    rows = fs.rows(split)
    if len(rows) == 0:
        raise UserError(f"{fs.manifest.path} has no chunk in split {split!r} ({what})")
    return rows


def _calibrate(loc, fs, cfg: EvalConfig, seg_frames: int) -> dict[str, Any]:
    """Kappas and (for scored methods) the threshold comparison on the val split.

    Empty when calibration is off or the features have no val chunk (or no source in it).
    """
    rows = fs.rows("val")
    if not cfg.calibrate or len(rows) == 0:
        return {}
    val = predict_split(loc, fs, rows, cfg.batch_size, "predicting val")
    if not val.active.any():  # no source to fit a kappa or a threshold on
        return {}
    fitted = "density kappas" + (", detection thresholds, confidence temperature"
                                 if loc.scored else "")  # fmt: skip
    console_log(f"fitting on val ({len(val.active)} frames): {fitted}")
    args = (val.hyps, val.conf, val.targets, val.active)
    out: dict[str, Any] = {
        "kappa_vmf": density.choose_kappa(*args, valid=val.valid),
        "kappa_voronoi": density.choose_kappa(*args, voronoi=True, valid=val.valid),
    }
    if loc.scored:
        from ..analysis import calibration

        seg = metrics.segment_ids(val.clip_id, val.frame, seg_frames)
        out["thresholds_val"] = thresholds.compare_thresholds(
            val.conf, val.hyps, val.targets, val.active, seg
        )
        win = calibration.winner_labels(val.hyps, val.targets, val.active, val.valid)
        t = calibration.fit_temperature(val.conf, win, val.valid)
        out["calibration_val"] = {
            "temperature": t,
            "ece": calibration.reliability(val.conf, win, val.valid)["ece"],
            "ece_calibrated": calibration.reliability(
                calibration.apply_temperature(val.conf, t), win, val.valid
            )["ece"],
        }
    return out


def _threshold(cfg: EvalConfig, loc, cal: dict[str, Any], fs: FeatureSet) -> float:
    """The detection threshold: given, learned on val, or the model's own."""
    if cfg.threshold is not None:
        return cfg.threshold
    if not cfg.learn_threshold:
        return loc.threshold
    if not loc.scored:
        raise UserError(f"--learn-threshold: method {loc.method!r} has no confidence scores")
    if "thresholds_val" not in cal:
        raise UserError(
            f"--learn-threshold needs a val split with sources in {fs.manifest.path} "
            "(and calibrate on)"
        )
    return cal["thresholds_val"]["sgl"]["threshold"]


def evaluate_run(
    model: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    cfg: EvalConfig | None = None,
    force: bool = False,
) -> Manifest:
    """Score a trained run or an export on one split and write an eval artifact.

    Args:
        model: a run (``ssl train``) or export (``ssl export``) artifact.
        features: a features artifact made with the model's feature parameters.
        out: the eval artifact to write.
        cfg: the options (:class:`EvalConfig`; defaults when None).
        force: replace an existing, different artifact at ``out``.

    Returns:
        The eval artifact's manifest.
    """
    from ..models.localize import load_localizer

    cfg = cfg or EvalConfig()
    cfg.validate()
    loc = load_localizer(model)
    model_m = read_manifest(loc.source, ("run", "export"))
    fs = open_features(features)
    _check_compatible(loc.spec, fs, loc.source, model_m.kind)
    rows = _rows(fs, cfg.split, "--split")
    check_batch(min(cfg.batch_size, len(rows)), fs.shape, loc.K, "--batch-size")
    seg_frames = fs.spec.segment_frames(cfg.segment_s)
    with build_artifact(out, "eval", to_dict(cfg), [model_m, fs.manifest], force=force) as b:
        if b.reused:
            return b.manifest
        cal = _calibrate(loc, fs, cfg, seg_frames)
        thr = _threshold(cfg, loc, cal, fs)
        fr = predict_split(loc, fs, rows, cfg.batch_size, f"predicting {cfg.split}")
        kappa = (cal["kappa_vmf"], cal["kappa_voronoi"]) if cal else None
        temp = cal.get("calibration_val", {}).get("temperature")
        for key, spec in (("model_array", loc.spec), ("data_array", fs.spec)):
            if spec is not None and spec.array is not None:  # what ssl report checks
                b.extra[key] = spec.array.to_dict()
        slots = loc.slot_classes
        _score_and_write(b, fr, fs, cfg, loc, thr, loc.label, kappa=kappa, temperature=temp,
                         model_classes=None if slots is None else int(slots.max()) + 1,
                         **cal)  # fmt: skip
    return b.manifest


def _score_and_write(b, fr: Frames, fs: FeatureSet, cfg: EvalConfig, loc, thr: float,
                     label: str, *, kappa=None, temperature=None, model_classes=None,
                     **extra: Any) -> None:  # fmt: skip
    """Score the frames ``fr`` of localizer ``loc`` and write them into the eval artifact
    being built (``b``): :func:`score_predictions` (class-aware too when
    :func:`class_aware` allows), :func:`write_eval`, the DCASE result files
    (``cfg.dcase_out``: with the localizer's classes, if any), the plots (``cfg.plots``; the
    reliability diagram for scored methods) and the manifest's extras. ``extra`` goes to
    ``metrics.json``."""
    n_cls = class_aware(fr, fs.n_classes, thr, model_classes)
    merge = float(loc.merge_deg)
    merging = f", hypotheses merged within {merge:g} deg" if merge else ""
    console_log(f"scoring {len(fr.active)} frames of {cfg.split} (threshold {thr:.3f}{merging})")
    scores = score_predictions(fr, thr, fs.spec.segment_frames(cfg.segment_s), loc.scored,
                               kappa, temperature, counts=loc.counts,
                               n_classes=n_cls, merge_deg=merge)  # fmt: skip
    more = {} if n_cls is None else {"n_classes": n_cls}
    write_eval(b.dir, fr, loc.method, thr, scores, loc.scored, merge_deg=merge, split=cfg.split,
               label=label, **more, **extra)  # fmt: skip
    if cfg.dcase_out:
        b.extra["dcase_files"] = write_dcase(b.dir, fr, thr, fs.hop_s, fr.classes, merge)
    if cfg.plots:
        from ..analysis.plots import plot_eval

        plot_eval(b.dir, fr, fs.hop_s, thr, merge_deg=merge)
        if loc.scored:
            from ..analysis.plots import plot_reliability

            plot_reliability(b.dir / "plots" / "reliability.png", fr, temperature, loc.label)
    if merge:
        b.extra["merge_deg"] = merge
    b.extra.update({"method": loc.method, "K": loc.K, "threshold": thr,
                    "scored": loc.scored, "frames": int(len(fr.active))})  # fmt: skip


def write_dcase(directory: Path, fr: Frames, threshold: float, hop_s: float, classes=None,
                merge_deg: float = 0.0) -> int:  # fmt: skip
    """Write ``dcase/<clip_id>.csv`` for every clip of ``fr``: its detections at
    ``threshold`` (after merging within ``merge_deg``) decimated to 100 ms label frames
    (:func:`ssl_toolkit.analysis.dcase_csv.result_tables`); returns the number of files.

    Args:
        classes: ``[N, K]`` or ``[K]`` int predicted class of each slot (``ssl eval``
            passes ``Frames.classes``: a class-aware model's slot classes, the classes read
            from DCASE result files); None: class 0 (class-agnostic).
    """
    from ..analysis.dcase_csv import result_tables, write_results
    from ..models.localize import detections

    hyps, detected = detections(fr.hyps, fr.conf, fr.valid, threshold, merge_deg)
    tables = result_tables(fr.clip_id, fr.frame, hyps, detected, hop_s, classes)
    return len(write_results(directory / "dcase", tables))


def evaluate_dcase_csv(
    csv_dir: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    cfg: EvalConfig | None = None,
    name: str | None = None,
    force: bool = False,
) -> Manifest:
    """Score a folder of DCASE result files (any system's) on one split, as an eval artifact.

    The folder holds ``<clip_id>.csv`` for every clip of the split (other files are listed
    in one warning line). Each file is read by
    :func:`~ssl_toolkit.core.labels.read_metadata` and put behind the localizer interface
    (:class:`~ssl_toolkit.analysis.dcase_csv.DcaseCsvLocalizer`): a label frame's rows are
    the predictions of each of its feature frames (held, not interpolated), K is the most
    rows in one label frame, and the listed rows are the detections (confidence 1, no
    scores: EMD weighs them uniformly, no calibration; they estimate the source count, so
    frame recall is reported). Then every metric is computed exactly as for a model
    (:func:`score_predictions`) into the same ``metrics.json`` / ``metrics.csv`` /
    ``predictions.npz``, so ``ssl report`` tabulates it beside the models (its method
    column shows ``name``). Scoring is class-agnostic, as for every method, and also
    class-aware (the ``*_cls`` metrics, with the rows' classes) when the features have
    classes (:func:`class_aware`).

    Args:
        csv_dir: the folder of result files.
        features: the features artifact whose split, frames and labels are scored.
        out: the eval artifact to write.
        cfg: the options (``split``, ``segment_s``, ``plots``, ``dcase_out``; a threshold
            is refused: the rows are the detections).
        name: the system's name in reports (default: the folder's name).
        force: replace an existing, different artifact at ``out``.

    Raises:
        UserError: a threshold option, no chunk in the split, the folder missing, a clip's
            file missing (naming it) or malformed (naming the file and line), or ``out``
            holding something else without ``force``.
    """
    import hashlib

    from ..analysis.dcase_csv import DcaseCsvLocalizer, check_degrees, read_results
    from ..analysis.frames import label_frames
    from ..core.geometry import unit_to_sph
    from ..core.memory import check_fits

    cfg = cfg or EvalConfig()
    cfg.validate()
    if cfg.threshold is not None or cfg.learn_threshold:
        raise UserError(
            "--threshold / --learn-threshold do not apply to --dcase-csv: the listed rows are "
            "the detections"
        )
    csv_dir = Path(csv_dir)
    label = str(name) if name else csv_dir.resolve().name
    fs = open_features(features)
    rows = _rows(fs, cfg.split, "--split")
    lab = label_frames(fs, rows)
    n_label = _label_frames_per_clip(lab["clip_id"], lab["frame"], fs.hop_s)
    tables = read_results(csv_dir, lab["clip_id"], n_frames=n_label)
    ref_az = unit_to_sph(np.asarray(lab["targets"], np.float64)[np.asarray(lab["active"], bool)])
    check_degrees(tables, csv_dir, np.degrees(ref_az[0]))
    # the scored arrays are dense in the most rows of one frame (K): [N, K] and [N, S, K]
    k = max((int(t.groupby("frame").size().max()) for t in tables.values() if len(t)), default=1)
    n, s = len(lab["frame"]), np.shape(lab["active"])[1]
    check_fits(float(n) * k * (25 + 2 * 8 * s), f"--dcase-csv {csv_dir}: {n} frames of up to "
               f"{k} rows", "score fewer rows per label frame")  # fmt: skip
    digest = hashlib.sha256()
    for clip in tables:
        digest.update(clip.encode() + b"\0" + (csv_dir / f"{clip}.csv").read_bytes() + b"\0")
    config = {**to_dict(cfg), "dcase_csv": str(csv_dir.resolve()), "name": label,
              "csv_sha256": digest.hexdigest()}  # fmt: skip
    with build_artifact(out, "eval", config, [fs.manifest], force=force,
                        protect=(str(csv_dir.resolve()),)) as b:  # fmt: skip
        if b.reused:
            return b.manifest
        loc = DcaseCsvLocalizer(tables, fs.hop_s, label, csv_dir)
        pred = loc.localize((lab["clip_id"], lab["frame"]))
        fr = Frames(hyps=pred.hyps, conf=pred.conf, valid=pred.valid, classes=pred.classes,
                    **lab)  # fmt: skip
        _score_and_write(b, fr, fs, cfg, loc, loc.threshold, label,
                         source=str(csv_dir.resolve()))  # fmt: skip
        b.extra["label"] = label
    return b.manifest


def _label_frames_per_clip(clip_id, frame, hop_s: float) -> dict[str, int]:
    """``{clip: label frames}`` that the feature frames ``frame`` of each clip reach."""
    from ..analysis.dcase_csv import label_frame

    clip_id = np.asarray(clip_id).astype(str)
    last = pd.Series(label_frame(frame, hop_s)).groupby(clip_id).max()
    return {str(c): int(v) + 1 for c, v in last.items()}


def load_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """``metrics.json`` of an eval artifact (checked to be one)."""
    import json

    man = read_manifest(path, "eval")
    return json.loads(man.file("metrics.json").read_text())


#: Columns of the summary table printed by ``ssl eval`` / ``ssl baseline`` (key -> title;
#: a metric an eval lacks, e.g. the class-aware ``*_cls``, is left out).
SUMMARY = metrics.titles(
    ("frames", "oracle_deg", "chance_oracle_deg", "emd_deg", "hungarian_deg", "frame_recall",
     "F20", "LE_CD_deg", "F20_cls", "LE_CD_deg_cls"),
    short=True,
)  # fmt: skip


def summary(doc: dict[str, Any], columns: dict[str, str] | None = None) -> dict[str, Any]:
    """``metrics.json`` content narrowed to ``columns`` (key -> short title; default
    :data:`SUMMARY`), one entry per subset."""
    columns = SUMMARY if columns is None else columns
    return {
        s: {title: v[k] for k, title in columns.items() if k in v}
        for s, v in doc.items()
        if s in ("D1", "D2", "D3", "overall") and isinstance(v, dict)
    }

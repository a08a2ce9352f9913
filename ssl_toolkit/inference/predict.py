"""Localize sources in raw multichannel audio files with a trained run or an export.

For each audio file the features the model was trained on are computed with
``data_prep.features.extract``, block by block (bounded memory for any file
length), the model runs on chunks of ``chunk_frames`` frames as in training, and
two CSV files are written, one row per (model) frame and direction, angles in degrees
(the toolkit's own format):

- ``<stem>_hypotheses.csv``: ``frame, time_s, hypothesis, azimuth_deg, elevation_deg,
  confidence, detected`` for all K hypotheses of every frame;
- ``<stem>.csv``: ``frame, time_s, azimuth_deg, elevation_deg, confidence`` for the
  detected sources only (confidence >= the threshold learned in training on the val split,
  or given), after the hypotheses within the model's ``merge_deg`` of a more confident one
  are merged into it (:func:`~ssl_toolkit.models.localize.merge_nearby`: the merged
  direction and summed confidence are written; ``detected`` in the hypotheses CSV marks the
  slot each detection was merged into).

With ``dcase=True`` a third one, ``dcase/<stem>.csv``, holds the detected sources as a
DCASE result file (100 ms label frames, ``frame,class,source,azimuth,elevation``, no header;
decimated as :mod:`ssl_toolkit.analysis.dcase_csv` states, streamed block by block): the
``dcase/`` folder is what ``ssl eval --dcase-csv`` and the DCASE evaluation scripts take.

Outputs are safe to share a folder: every output name of every input is computed
before anything is predicted and two inputs that would write one file are refused, as is
an ``--out`` inside an artifact of this toolkit; one process at a time writes a given file
(the stages' advisory writer lock, :func:`ssl_toolkit.core.artifacts.writer_lock`); each
file is built in a hidden temporary sibling and renamed into place once complete; an
existing output is replaced only with ``force`` and only when predict wrote it.

Streaming: a block of L frames needs the audio of those frames plus half an FFT
window of context on each side (frames are centred at ``t * hop``), so the
features of consecutive blocks concatenate to exactly the whole-file features.
A file at another sample rate is resampled block by block with
``scipy.signal.resample_poly`` (with the filter's support as context, so the
result equals resampling the whole file); a file with another channel count is refused.
The block is clamped to what the memory allows (and to :data:`MAX_BLOCK_SECONDS`), so the
peak memory does not grow with the file's length, whatever ``--block-seconds`` says.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..core.artifacts import ArtifactError, peek_kind, sibling, sibling_stem, writer_lock
from ..core.cpu import tick
from ..core.errors import DataError, UserError
from ..core.geometry import unit_to_sph
from ..features.spec import TYPES, FeatureSpec
from ..models.localize import Localization, ModelLocalizer, detect, load_localizer, merge_nearby

HYP_COLUMNS = (
    "frame",
    "time_s",
    "hypothesis",
    "azimuth_deg",
    "elevation_deg",
    "confidence",
    "detected",
)
SRC_COLUMNS = ("frame", "time_s", "azimuth_deg", "elevation_deg", "confidence")


# --------------------------------------------------------------------------- audio


class AudioReader:
    """Random access to an audio file at the model's sample rate, ``[M, n]`` float32.

    Resampling (when the file's rate differs) is done per request with
    ``resample_poly`` over the requested span plus the filter's support, aligned
    on the polyphase grid, so any span equals the same span of the whole file resampled.
    """

    def __init__(self, path: str | os.PathLike, fs: int, n_channels: int | None):
        import soundfile as sf

        self.path = Path(path)
        try:
            self._f = sf.SoundFile(str(self.path))
        except (RuntimeError, sf.LibsndfileError) as e:
            why = " ".join(str(e).split())
            raise DataError(f"{self.path}: cannot read audio ({why})") from e
        if n_channels is not None and self._f.channels != n_channels:
            self._f.close()
            raise DataError(
                f"{self.path} has {self._f.channels} channels, the model expects "
                f"{n_channels}; give a recording of the array the model was trained for"
            )
        if self._f.frames <= 0:
            self._f.close()
            raise DataError(f"{self.path} holds no samples (an empty recording)")
        self.fs_in = self._f.samplerate
        self.fs = int(fs)
        ratio = Fraction(self.fs, self.fs_in)
        self.up, self.down = ratio.numerator, ratio.denominator
        # resample_poly's default filter has half-length 10 * max(up, down) at the up rate
        self.margin = 0 if ratio == 1 else math.ceil(10 * max(self.up, self.down) / self.up) + 1
        self.n = math.ceil(self._f.frames * self.up / self.down)

    def _read_in(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` at the file's rate, refusing NaN or infinite ones."""
        self._f.seek(start)
        x = self._f.read(stop - start, dtype="float32", always_2d=True).T  # (M, n)
        if not np.isfinite(x).all():
            t = (start + int(np.flatnonzero(~np.isfinite(x).all(0))[0])) / self.fs_in
            raise DataError(f"{self.path} holds NaN or infinite samples (first at {t:.3f} s)")
        return x

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` at the model rate ``[M, stop - start]``, clipped."""
        start, stop = max(0, start), min(self.n, stop)
        if self.up == self.down == 1:
            return self._read_in(start, stop)
        from scipy.signal import resample_poly

        a = max(0, (start * self.down // self.up - self.margin) // self.down * self.down)
        b = min(self._f.frames, -(-stop * self.down // self.up) + self.margin)
        y = resample_poly(self._read_in(a, b), self.up, self.down, axis=1)
        off = a * self.up // self.down
        return y[:, start - off : stop - off].astype(np.float32)

    def close(self) -> None:
        self._f.close()


# --------------------------------------------------------------------------- features


def _context_samples(spec: FeatureSpec) -> int:
    """Samples of context a block needs on each side: half a window, rounded up to hops."""
    hop = spec.hop_length
    half = max(spec.n_fft, spec.win_length) // 2
    return -(-half // hop) * hop + hop


def stream_features(
    reader: AudioReader,
    spec: FeatureSpec,
    block_frames: int,
    extract: Callable[[np.ndarray, int, FeatureSpec], np.ndarray] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Features of a whole file, block by block.

    Args:
        reader: the audio (``read(start, stop)`` and ``n`` at the model rate ``reader.fs``).
        spec: the features' specification (hop, window, FFT size, ...).
        block_frames: frames per block (memory is O(block_frames)).
        extract: ``extract(audio [M, n], fs, spec) -> [C, T, F]``; default
            :func:`ssl_toolkit.features.extract.extract`.

    Yields:
        ``(first_frame, feats [C, L, F])``; concatenated along T they equal
        ``extract`` of the whole file.
    """
    if extract is None:
        from ..features.extract import extract
    hop = spec.hop_length
    ctx = _context_samples(spec)
    t0 = 0
    while True:
        start = max(0, t0 * hop - ctx)
        stop = min(reader.n, (t0 + block_frames) * hop + ctx)
        feats = extract(reader.read(start, stop), reader.fs, spec)  # (C, T_local, F)
        off = t0 - start // hop
        take = feats[:, off : off + block_frames]
        if take.shape[1] == 0:
            return
        yield t0, take
        t0 += take.shape[1]
        if stop >= reader.n and off + block_frames >= feats.shape[1]:
            return


def run_chunks(localizer: ModelLocalizer, feats: np.ndarray, chunk: int) -> Localization:
    """Localize ``feats [C, L, F]`` cut into chunks of ``chunk`` frames (a batch).

    Returns:
        The localization of the ``L`` frames.
    """
    c, length, f = feats.shape
    n_full = length // chunk
    parts = []
    if n_full:
        x = feats[:, : n_full * chunk].reshape(c, n_full, chunk, f).transpose(1, 0, 2, 3)
        parts.append(localizer.localize(x))  # (B, C, chunk, F) -> B * chunk frames
    if length % chunk:
        parts.append(localizer.localize(feats[None, :, n_full * chunk :]))
    return Localization.concat(parts, localizer.K)


# --------------------------------------------------------------------------- outputs


def _degrees(hyps) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation in degrees (float64, rounded to 0.001) of ``[..., 3]``."""
    az, el = unit_to_sph(hyps)
    return (np.round(np.degrees(az.astype(np.float64)).ravel(), 3),
            np.round(np.degrees(el.astype(np.float64)).ravel(), 3))  # fmt: skip


def _rows(t0: int, hop_s: float, loc: Localization, threshold: float, merge_deg: float = 0.0):
    """CSV rows of a block: all valid hypotheses, and the detected sources (merged within
    ``merge_deg``: their merged directions and confidences)."""
    length, k = loc.conf.shape
    frame = np.repeat(np.arange(t0, t0 + length), k)
    time_s = np.round(frame * hop_s, 6)
    mh, mc, mv = merge_nearby(loc.hyps, loc.conf, loc.valid, merge_deg)
    det = detect(mc, mv, threshold).ravel()
    keep = loc.valid.ravel()
    az, el = _degrees(loc.hyps)
    conf = np.round(loc.conf.ravel().astype(np.float64), 5)
    cols = [frame, time_s, np.tile(np.arange(k), length), az, el, conf, det.astype(int)]
    hyp_rows = list(zip(*(c[keep].tolist() for c in cols), strict=True))
    if merge_deg:
        az, el = _degrees(mh)
        conf = np.round(mc.ravel().astype(np.float64), 5)
    src_rows = list(zip(*(c[det].tolist() for c in (frame, time_s, az, el, conf)), strict=True))
    return hyp_rows, src_rows


#: What each file predict writes for one recording is, by role (named in messages).
ROLES = {
    "hypotheses": "hypotheses CSV",
    "detections": "detections CSV",
    "dcase": "DCASE result file",
    "plot": "plot",
}


@dataclass
class _Job:
    """One recording to localize and the files it will write (role -> final path)."""

    audio: Path
    paths: dict[str, Path]


def output_paths(stem: str, out: Path, plot: bool, dcase: bool) -> dict[str, Path]:
    """Every file predict writes for a recording named ``stem``, by role (see :data:`ROLES`)."""
    paths = {"hypotheses": out / f"{stem}_hypotheses.csv", "detections": out / f"{stem}.csv"}
    if dcase:
        paths["dcase"] = out / "dcase" / f"{stem}.csv"
    if plot:
        paths["plot"] = out / f"{stem}.png"
    return paths


def _tmp_path(final: Path) -> Path:
    """A hidden, unique temporary sibling of ``final`` (same suffix: matplotlib reads it),
    named as the stages name theirs (:func:`~ssl_toolkit.core.artifacts.sibling`: a long
    name is shortened, so the temporary name fits wherever ``final`` does)."""
    return sibling(final, f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")


def predict_file(
    predictor: ModelLocalizer,
    job: _Job,
    threshold: float,
    block_frames: int,
    reader: AudioReader | None = None,
) -> None:
    """Localize the sources of one recording and write ``job.paths`` (see the module
    docstring), each built in a temporary sibling and renamed into place once complete
    (the detections CSV last). The caller holds the writer locks of ``job.paths``.
    """
    spec = _spec(predictor)
    merge = float(predictor.merge_deg)
    if reader is None:
        reader = AudioReader(job.audio, spec.fs, spec.n_channels)
    tmp = {role: _tmp_path(p) for role, p in job.paths.items()}
    decimator = None
    if "dcase" in tmp:
        from ..analysis.dcase_csv import StreamDecimator

        decimator = StreamDecimator(spec.hop_s)
    try:
        with open(tmp["hypotheses"], "w", newline="") as fh, \
                open(tmp["detections"], "w", newline="") as fsrc:  # fmt: skip
            wh, ws = csv.writer(fh), csv.writer(fsrc)
            wh.writerow(HYP_COLUMNS)
            ws.writerow(SRC_COLUMNS)
            for t0, feats in stream_features(reader, spec, block_frames):
                tick()  # threads follow the machine's load
                loc = run_chunks(predictor, feats, spec.chunk_frames)
                for s in range(0, len(loc.conf), ROWS_PER_WRITE):  # rows: bounded memory
                    part = _slice(loc, s, s + ROWS_PER_WRITE)
                    hyp_rows, src_rows = _rows(t0 + s, spec.hop_s, part, threshold, merge)
                    wh.writerows(hyp_rows)
                    ws.writerows(src_rows)
                if decimator is not None:
                    frames = np.arange(t0, t0 + len(loc.conf))
                    # a class-aware localizer's classes (None: class 0)
                    decimator.add(frames, *loc.detections(threshold, merge), loc.classes)
        if decimator is not None:
            from ..core.labels import write_metadata

            write_metadata(tmp["dcase"], decimator.table())
        if "plot" in tmp:
            plot_predictions(tmp["hypotheses"], tmp["plot"], threshold, job.audio.stem)
        for role in ("hypotheses", "dcase", "plot", "detections"):
            if role in tmp:
                os.replace(tmp[role], job.paths[role])
    finally:
        reader.close()
        for p in tmp.values():
            p.unlink(missing_ok=True)


#: Frames whose CSV rows are built at once (the rows are Python objects: ~0.6 kB each).
ROWS_PER_WRITE = 2048


def _slice(loc: Localization, a: int, b: int) -> Localization:
    """Frames ``[a, b)`` of ``loc``."""
    cls = None if loc.classes is None else loc.classes[a:b]
    return Localization(loc.hyps[a:b], loc.conf[a:b], loc.valid[a:b], cls)


def plot_predictions(hyp_csv: Path, png: Path, threshold: float, name: str | None = None) -> Path:
    """Hypotheses over time from ``<stem>_hypotheses.csv``, in the eval plots' encoding
    (titled ``name``, default the CSV's stem)."""
    import pandas as pd

    from ..analysis.plots import plot_tracks
    from ..core.geometry import sph_to_unit

    df = pd.read_csv(hyp_csv)
    u = sph_to_unit(np.deg2rad(df.azimuth_deg.to_numpy()), np.deg2rad(df.elevation_deg.to_numpy()))
    name = name or hyp_csv.stem.removesuffix("_hypotheses")
    return plot_tracks(png, df.time_s.to_numpy(), u[:, None], df.confidence.to_numpy()[:, None],
                       df.detected.to_numpy()[:, None] == 1,
                       f"{name}: threshold {threshold:.2f}")  # fmt: skip


#: Longest block: results do not depend on the block (features are streamed exactly and
#: the model runs chunk by chunk), so a longer one would only cost memory.
MAX_BLOCK_SECONDS = 60.0
#: Share of the available memory one block may use (the model, the interpreter, the
#: DCASE table and other processes keep the rest).
BLOCK_MEMORY_SHARE = 0.5


def frame_bytes(spec: FeatureSpec, k: int, rate_ratio: float = 1.0) -> float:
    """Estimated peak bytes per frame of a block, an upper bound: its audio as read (at the
    file's rate, ``rate_ratio`` times the model's) and resampled (float64), the STFT and
    the feature extractor's intermediates, the features and their chunked copy, and the
    model's forward pass (:func:`~ssl_toolkit.core.memory.batch_bytes`). For the demo's
    model it says 11.7 MB per second of audio; predict's peak RSS grows by 3.8 MB per
    second of block.
    """
    from ..core.memory import batch_bytes

    hop, m = spec.hop_length, spec.n_channels
    c, t, f = spec.chunk_shape
    audio = hop * m * (4 + 12 * max(1.0, rate_ratio) + 8)
    stft = m * (spec.n_fft // 2 + 1) * 16 * 4
    feats = c * f * 4 * 4
    return audio + stft + feats + batch_bytes(1, spec.chunk_shape, k) / t


def bounded_block(
    predictor: ModelLocalizer, block_seconds: float, longest: int, rate_ratio: float = 1.0
) -> int:
    """Frames per block: ``--block-seconds`` clamped to what the memory allows and to
    :data:`MAX_BLOCK_SECONDS`, with a warning when the clamp shortens a block.

    Args:
        longest: samples (at the model's rate) of the longest file.
        rate_ratio: largest file rate over the model's rate (a resampled file reads more).

    Raises:
        ConfigError: naming ``--block-seconds`` when not even one chunk fits in memory.
    """
    from ..core import memory
    from ..core.config import ConfigError
    from ..core.console import warn

    spec = _spec(predictor)
    want = _block_frames(spec, block_seconds)
    if spec.type not in TYPES:  # features this toolkit does not make: extract refuses them
        return want
    chunk = spec.chunk_frames
    per_frame = frame_bytes(spec, predictor.K, rate_ratio)
    avail = memory.available_bytes()
    if per_frame * chunk > avail * BLOCK_MEMORY_SHARE:
        raise ConfigError(
            f"--block-seconds: even a block of one chunk ({chunk} frames) needs about "
            f"{memory.gigabytes(per_frame * chunk)} of memory, more than half the "
            f"{memory.gigabytes(avail)} available; free some memory"
        )
    fits = int(avail * BLOCK_MEMORY_SHARE / per_frame) // chunk * chunk
    cap = min(fits, _block_frames(spec, MAX_BLOCK_SECONDS))
    if min(want, spec.n_frames(longest)) > cap:
        why = f"half the {memory.gigabytes(avail)} of memory available"
        if cap < fits:
            why = f"the {MAX_BLOCK_SECONDS:g} s cap (longer blocks only cost memory)"
        warn(f"--block-seconds {block_seconds:g} lowered to {cap * spec.hop_s:g} s: {why}")
    return min(want, cap)


def _block_frames(spec: FeatureSpec, block_seconds: float) -> int:
    """Frames per block of about ``block_seconds``: a whole number of chunks, at least one."""
    chunk = spec.chunk_frames
    return max(chunk, round(block_seconds / spec.hop_s) // chunk * chunk)


def _spec(predictor: ModelLocalizer) -> FeatureSpec:
    """The predictor's feature specification (a run that does not record one is refused)."""
    if predictor.spec is None:
        raise ArtifactError(f"{predictor.source}: its model.json has no feature_params")
    return predictor.spec


def _announce(predictor: ModelLocalizer, spec: FeatureSpec, audio_files) -> None:
    """State the model's expected input in one line and what each file's audio says
    against it (:mod:`~ssl_toolkit.inference.input_checks`: one line per finding, warnings
    as ``warning:``), all on stderr; printed once every file was read (a file that fails
    leaves its error as the only line)."""
    from rich.markup import escape

    from ..core.console import err, warn
    from ..features.spec import warn_unknown_array
    from .input_checks import banner, check_audio

    lines: list[tuple[str, str]] = []  # (kind, line)
    for a in audio_files:
        r = AudioReader(a, spec.fs, spec.n_channels)
        try:
            check_audio(r, spec, lambda ln: lines.append(("warn", ln)),
                        lambda ln: lines.append(("note", f"note: {ln}")))  # fmt: skip
        finally:
            r.close()
    err.print(escape(banner(spec, predictor.source)), highlight=False, soft_wrap=True)
    warn_unknown_array(spec, predictor.source, "run" if predictor.backend == "torch" else "export")
    for kind, line in lines:
        if kind == "warn":
            warn(line)
        else:
            err.print(escape(line), highlight=False, soft_wrap=True)


def predict_files(
    export_or_run: str | os.PathLike,
    audio_files,
    out_dir: str | os.PathLike,
    threshold: float | None = None,
    plot: bool = False,
    block_seconds: float = 10.0,
    force: bool = False,
    backend: str = "auto",
    dcase: bool = False,
) -> list[Path]:
    """Localize the sources of each audio file with a run or an export.

    Every output name of every file is computed first: two files that would write one
    path (``a.wav`` and ``a_hypotheses.wav``, ``x/rec.wav`` and ``y/rec.wav``), an output
    that is an input, and an ``out_dir`` that is or lies inside the model artifact (or any
    artifact of this toolkit) are refused before anything is written. One process at a
    time writes a given output file (the stages' advisory writer lock, naming the PID of
    its holder); each file is built in a temporary sibling and renamed into place once
    complete. An existing output is refused without ``force``; with ``force`` only a file
    of the same role written by predict is replaced (a CSV with predict's header, a
    matplotlib PNG, a DCASE result file), never another file.

    Args:
        export_or_run: a ``run`` or ``export`` artifact directory.
        audio_files: multichannel audio files (any format soundfile reads).
        out_dir: where the CSVs (and plots) go.
        threshold: detection threshold; default the model's (learned in training).
        plot: also write ``<stem>.png``.
        block_seconds: audio processed per block; clamped to what the memory allows
            (:func:`bounded_block`).
        force: replace existing outputs written by predict.
        backend: see :func:`ssl_toolkit.models.localize.load_localizer`.
        dcase: also write ``out_dir/dcase/<stem>.csv``, the DCASE result file of each file.

    Returns:
        The detected-sources CSV of each file, then (``dcase``) the DCASE result file of
        each file.

    Raises:
        UserError / DataError: missing files, colliding outputs, existing outputs without
            ``force``, an output being written by another process, unreadable audio or a
            channel count the model does not take.
    """
    from ..core.console import track

    audio_files = [Path(a) for a in audio_files]
    if not audio_files:
        raise UserError("give at least one audio file")
    if not (block_seconds > 0 and math.isfinite(block_seconds)):
        raise UserError(f"--block-seconds must be a finite number > 0, got {block_seconds}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:  # NaN fails too
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    _check_argument_order(Path(export_or_run), audio_files)
    for a in audio_files:
        if a.is_dir():
            raise DataError(f"audio file {a} is a directory; give audio files (wav, flac, ...)")
        if not a.is_file():
            raise DataError(f"audio file {a} does not exist")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is an existing file, not a directory")
    jobs = _plan(audio_files, out, plot, dcase)
    _check_out_place(out, Path(export_or_run), jobs)
    dcase_dir = out / "dcase"
    if dcase and dcase_dir.exists() and not dcase_dir.is_dir():
        raise UserError(f"{dcase_dir} is an existing file; --dcase writes a folder there")
    made: list[Path] = []  # folders this call created (removed again if left empty)
    try:
        for d in [out, dcase_dir] if dcase else [out]:
            if not d.exists():
                d.mkdir(parents=True)
                made.append(d)
        with contextlib.ExitStack() as locks:
            for p in sorted({p for j in jobs for p in j.paths.values()}):
                locks.enter_context(writer_lock(p))
                for old in p.parent.glob(f"{sibling_stem(p)}.tmp-*"):  # of dead writers
                    if old.is_file() or old.is_symlink():
                        old.unlink(missing_ok=True)
            _check_existing(jobs, force)
            return _predict_jobs(export_or_run, jobs, threshold, block_seconds, backend, dcase,
                                 track)  # fmt: skip
    except OSError as e:
        raise UserError(f"cannot write {e.filename or out}: {e.strerror or e}") from e
    finally:
        for d in reversed(made):  # a failed first run leaves no empty output folder
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def _check_argument_order(model: Path, audio_files: list[Path]) -> None:
    """Refuse ``ssl predict AUDIO MODEL`` (the model comes first) with one line that says so:
    the model argument is a file, and an audio argument is a run or export artifact."""
    if model.is_dir() or not model.is_file():
        return
    swapped = [a for a in audio_files if peek_kind(a) in ("run", "export")]
    if swapped:
        raise UserError(
            f"{model} is a file and {swapped[0]} a model ({peek_kind(swapped[0])} "
            f"artifact): the arguments are swapped; the model comes first: "
            f"ssl predict {swapped[0]} {model} ..."
        )


def _predict_jobs(export_or_run, jobs, threshold, block_seconds, backend, dcase, track):
    """Load the model, check every file's header and the block's memory, then predict."""
    predictor = load_localizer(export_or_run, backend)
    spec = _spec(predictor)
    if dcase:
        from ..analysis.dcase_csv import check_hop

        check_hop(spec.hop_s)
    longest, ratio = 0, 1.0
    for j in jobs:  # every header checked before anything is written
        r = AudioReader(j.audio, spec.fs, spec.n_channels)
        longest, ratio = max(longest, r.n), max(ratio, r.fs_in / r.fs)
        r.close()
    block = bounded_block(predictor, block_seconds, longest, ratio)
    _announce(predictor, spec, [j.audio for j in jobs])  # once every check has passed
    thr = predictor.threshold if threshold is None else float(threshold)
    for j in track(jobs, "localizing"):
        predict_file(predictor, j, thr, block)
    written = [j.paths["detections"] for j in jobs]
    return written + [j.paths["dcase"] for j in jobs if "dcase" in j.paths]


def _plan(audio_files: list[Path], out: Path, plot: bool, dcase: bool) -> list[_Job]:
    """Every output path of every file, refusing two files that would write one path and
    an output that is one of the inputs (a file given twice is predicted once)."""
    inputs = {a.resolve(): a for a in reversed(audio_files)}
    jobs, owner = [], {}
    seen = set()
    for a in audio_files:
        if a.resolve() in seen:
            continue
        seen.add(a.resolve())
        job = _Job(a, output_paths(a.stem, out, plot, dcase))
        for role, p in job.paths.items():
            key = p.resolve()
            if key in owner:
                b, brole = owner[key]
                what = f"the {ROLES[role]} of both"
                if role != brole:
                    what = f"the {ROLES[brole]} of {b.name}, the {ROLES[role]} of {a.name}"
                raise UserError(
                    f"{b} and {a} would both write {p} ({what}); give them separate --out "
                    "folders or rename one"
                )
            if key in inputs:
                raise UserError(f"{p}, the {ROLES[role]} of {a}, would overwrite the input "
                                f"{inputs[key]}; choose another --out")  # fmt: skip
            owner[key] = (a, role)
        jobs.append(job)
    return jobs


def _check_out_place(out: Path, model: Path, jobs: list[_Job]) -> None:
    """Refuse an ``out`` that is or lies inside the model artifact or any other artifact of
    this toolkit, and an output path that is, contains or lies inside the model artifact
    (``out`` may be the folder of the audio, or a folder that holds the model)."""
    o, m = out.resolve(), model.resolve()
    if o == m or m in o.parents:
        raise UserError(f"--out {out} is or lies inside the model artifact {model}: predict never "
                        "writes into an artifact; choose another --out")  # fmt: skip
    for d in [o, *o.parents]:
        kind = peek_kind(d)
        if kind is not None:
            raise UserError(f"--out {out} is inside the {kind} artifact {d}: predict never "
                            "writes into an artifact; choose another --out")  # fmt: skip
    for j in jobs:
        for p in j.paths.values():
            q = p.resolve()
            if q == m or m in q.parents or q in m.parents:
                raise UserError(f"{p} (an output for {j.audio}) would overwrite the model "
                                f"artifact {model}; choose another --out")  # fmt: skip


def _check_existing(jobs: list[_Job], force: bool) -> None:
    """Refuse an existing output that predict did not write (even with ``force``), and
    existing outputs without ``force`` (naming them). Called under the writer locks."""
    taken = []
    for j in jobs:
        for role, p in j.paths.items():
            if not (p.exists() or p.is_symlink()):
                continue
            if not _written_by_predict(p, role):
                raise UserError(
                    f"{p} exists and is not a {ROLES[role]} written by ssl predict; predict "
                    "never replaces it (move it away or choose another --out)"
                )
            taken.append(str(p))
    if taken and not force:
        more = f" and {len(taken) - 3} more" if len(taken) > 3 else ""
        verb = "exists" if len(taken) == 1 else "exist"
        raise UserError(f"{', '.join(taken[:3])}{more} {verb}; pass --force to overwrite")


def _written_by_predict(p: Path, role: str) -> bool:
    """Whether ``p`` is a regular file of ``role`` as predict writes it: the CSV header of
    its role, a matplotlib PNG, or a DCASE result file (5 numbers a row, or empty)."""
    if p.is_symlink() or not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 12)
    except OSError:
        return False
    if role == "plot":
        return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Matplotlib" in head
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if role in ("hypotheses", "detections"):
        return first == ",".join(HYP_COLUMNS if role == "hypotheses" else SRC_COLUMNS).encode()
    if not head:
        return True
    fields = first.split(b",")
    try:
        return len(fields) == 5 and all(math.isfinite(float(x)) for x in fields)
    except ValueError:
        return False

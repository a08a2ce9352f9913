"""One localizer interface for every method: learned runs, exports and classical baselines.

Whatever localizes yields, per frame, a :class:`Localization`:

- ``hyps [N, K, 3]`` unit vectors in the DCASE frame,
- ``conf [N, K]`` confidences in [0, 1],
- ``valid [N, K]`` bool: the slots that hold a real estimate (a classical method
  that finds fewer sources than K leaves the rest invalid; learned models fill every slot,
  except multi-ACCDOA, whose model empties the tracks it unifies: zero ``hyps`` vectors);
- ``classes [N, K]`` int64 or None: the sound class each slot predicts, -1 where unknown
  (and on every invalid slot). None for class-agnostic methods (every method but a
  class-aware multi-ACCDOA model, whose slot k is of class ``k // tracks``:
  :attr:`Localizer.slot_classes`, and DCASE result files, whose rows have classes).

Detection is one function, :func:`detect`, after an optional merge of nearby hypotheses
(:func:`merge_nearby`, the radius learned with the threshold on val: :func:`detections`);
metrics ignore invalid slots. Whether a
method has scores (its confidences say whether a source is there) is a property of
the method (:attr:`Localizer.scored`), never inferred from the values.

A :class:`Localizer` is a template (as ``pyroomacoustics.doa.DOA.locate_sources`` is):
subclasses implement ``_localize``; :meth:`Localizer.localize` checks and normalizes
what it returns. :class:`ModelLocalizer` runs a trained network (a run's PyTorch
weights, a TorchScript or an ONNX export) on feature chunks ``[B, C, T, F]``;
:func:`load_localizer` opens a run or an export artifact.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import readers
from ..core.artifacts import ArtifactError, Manifest, read_manifest
from ..core.errors import UserError
from ..features.spec import FeatureSpec
from . import REBUILD as RUN_REBUILD

__all__ = [
    "SCORED_METHODS",
    "Localization",
    "Localizer",
    "ModelLocalizer",
    "accdoa_slot_classes",
    "detect",
    "detections",
    "is_scored",
    "load_localizer",
    "merge_nearby",
    "method_label",
]

#: Learned methods whose models learn confidence scores (the others output conf = 1);
#: multi-ACCDOA's are the norms of its tracks.
SCORED_METHODS = ("rmcl", "amcl", "pit", "accdoa")
#: ONNX graph names of the exported model.
ONNX_INPUT, ONNX_OUTPUTS = "features", ("hyps", "conf")


def is_scored(method: str | None) -> bool:
    """Whether a learned ``method`` has confidence scores."""
    return method in SCORED_METHODS


def method_label(method: str | None, config: dict[str, Any] | None = None) -> str:
    """The name a method goes by in reports: ``rmcl*`` for rMCL with drawn negatives
    (and ``amcl*`` likewise), else the method itself."""
    name = str(method or "model")
    negatives = str((config or {}).get("negatives", "all"))
    return f"{name}*" if name in ("rmcl", "amcl") and negatives != "all" else name


def detect(conf, valid, threshold: float) -> np.ndarray:
    """Detected sources ``[N, K]`` bool: valid slots whose confidence reaches ``threshold``."""
    return (np.asarray(conf) >= threshold) & np.asarray(valid, dtype=bool)


#: Merge radii (degrees) a scored model's detection is learned with on val (0: no merge).
MERGE_RADII_DEG = (0.0, 10.0, 20.0, 30.0, 45.0)


def merge_nearby(hyps, conf, valid, radius_deg: float):
    """Hypotheses within ``radius_deg`` of a more confident one merged into it.

    An rMCL model spreads its hypotheses over the sphere as a quantizer of the source
    distribution (each confidence estimates the mass of its Voronoi cell), so a source
    near the border of two cells shares its mass between two nearby hypotheses, neither
    of which may reach the threshold alone, or both of which may (one source reported
    twice). Mode seeking undoes the split: taking the slots by decreasing confidence, each
    slot not yet merged gathers every valid, not yet merged slot within ``radius_deg`` of
    it (itself included); its direction becomes the confidence-weighted mean of theirs
    (normalized), its confidence their sum (at most 1), and the others become invalid.
    Vectorized over frames (one pass per slot). ``radius_deg`` 0 returns the input.

    Args:
        hyps: ``[N, K, 3]`` unit vectors; conf: ``[N, K]``; valid: ``[N, K]`` bool.

    Returns:
        ``(hyps, conf, valid)`` of the same shapes (float32, float32, bool).
    """
    h = np.asarray(hyps, np.float32)
    c = np.asarray(conf, np.float32)
    v = np.asarray(valid, bool)
    if radius_deg <= 0 or h.shape[1] < 2:
        return h, c, v
    cos_r = np.float32(np.cos(np.deg2rad(radius_deg)))
    order = np.argsort(-np.where(v, c, -1.0), axis=1, kind="stable")
    h = np.take_along_axis(h, order[..., None], 1)
    c = np.take_along_axis(c, order, 1)
    free = np.take_along_axis(v, order, 1).copy()
    out_h, out_c, out_v = h.copy(), np.zeros_like(c), np.zeros_like(free)
    for i in range(h.shape[1]):
        lead = free[:, i].copy()  # (N,)
        near = (np.einsum("nkd,nd->nk", h, h[:, i]) >= cos_r) & free & lead[:, None]
        w = np.where(near, c, np.float32(0.0))
        mean = np.einsum("nk,nkd->nd", w, h)
        norm = np.linalg.norm(mean, axis=-1, keepdims=True)
        mean = np.where(norm > 1e-6, mean / np.maximum(norm, 1e-12), h[:, i])  # no mass: own
        out_h[:, i] = np.where(lead[:, None], mean, h[:, i])
        out_c[:, i] = np.where(lead, np.minimum(w.sum(1), 1.0), 0.0)
        out_v[:, i] = lead
        free &= ~near
    inv = np.argsort(order, axis=1)  # back to the slots' order
    return (np.take_along_axis(out_h, inv[..., None], 1), np.take_along_axis(out_c, inv, 1),
            np.take_along_axis(out_v, inv, 1))  # fmt: skip


def detections(hyps, conf, valid, threshold: float, merge_deg: float = 0.0):
    """Detected sources: ``(directions [N, K, 3], detected [N, K] bool)``, after
    :func:`merge_nearby` at ``merge_deg`` (0: the hypotheses themselves, :func:`detect`)."""
    h, c, v = merge_nearby(hyps, conf, valid, merge_deg)
    return h, detect(c, v, threshold)


@dataclass
class Localization:
    """Per-frame output of a localizer (shapes in the module docstring).

    ``classes`` is None (class-agnostic, the default) or ``[N, K]`` int64, -1 = unknown.
    """

    hyps: np.ndarray
    conf: np.ndarray
    valid: np.ndarray
    classes: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, k = self.conf.shape
        if (
            self.hyps.shape != (n, k, 3)
            or self.valid.shape != (n, k)
            or (self.classes is not None and self.classes.shape != (n, k))
        ):
            cls = None if self.classes is None else self.classes.shape
            raise ValueError(
                f"localization shapes disagree: hyps {self.hyps.shape}, conf "
                f"{self.conf.shape}, valid {self.valid.shape}, classes {cls}"
            )

    @classmethod
    def concat(cls, parts: list[Localization], k: int) -> Localization:
        """Frames of ``parts`` one after the other (``k`` hypotheses when there are none).

        ``classes`` is None when no part has classes, else the parts' classes with -1
        (unknown) for the frames of a part without."""
        if not parts:
            return cls(np.zeros((0, k, 3), np.float32), np.zeros((0, k), np.float32),
                       np.zeros((0, k), bool))  # fmt: skip
        classes = None
        if any(p.classes is not None for p in parts):
            classes = np.concatenate([
                np.full(p.conf.shape, -1, np.int64) if p.classes is None else p.classes
                for p in parts
            ])  # fmt: skip
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS),
                   classes=classes)  # fmt: skip

    def detected(self, threshold: float) -> np.ndarray:
        """:func:`detect` on these frames."""
        return detect(self.conf, self.valid, threshold)

    def detections(self, threshold: float, merge_deg: float = 0.0):
        """:func:`detections` on these frames: ``(directions, detected)``."""
        return detections(self.hyps, self.conf, self.valid, threshold, merge_deg)


_FIELDS = ("hyps", "conf", "valid")


def checked(hyps, conf, valid=None, classes=None) -> Localization:
    """A :class:`Localization` from raw outputs: float32, unit vectors, conf in [0, 1].

    Non-finite outputs (a diverged model, NaN audio) make their slots invalid rather
    than being scored as directions. Leading axes (batch, frames) are flattened.

    Args:
        hyps: ``[..., K, 3]``; conf: ``[..., K]``; valid: ``[..., K]`` bool or None (all).
        classes: ``[..., K]`` or ``[K]`` (per slot) int, -1 = unknown; None: class-agnostic.
            Invalid slots get -1.
    """
    h = np.asarray(hyps, np.float32)
    c = np.asarray(conf, np.float32)
    lead, k = c.shape, c.shape[-1]
    h, c = h.reshape(-1, k, 3), c.reshape(-1, k)
    v = np.ones(c.shape, bool) if valid is None else np.asarray(valid, bool).reshape(-1, k)
    norm = np.linalg.norm(h, axis=-1)
    v = v & np.isfinite(norm) & (norm > 1e-12) & np.isfinite(c)
    h = np.where(v[..., None], h / np.where(v, norm, 1.0)[..., None], np.float32(0.0))
    h[~v] = (1.0, 0.0, 0.0)  # a placeholder unit vector, never scored
    c = np.where(v, np.clip(c, 0.0, 1.0), np.float32(0.0))
    cls = None
    if classes is not None:
        cls = np.broadcast_to(np.asarray(classes, np.int64), lead).reshape(-1, k)
        cls = np.where(v, cls, -1)
    return Localization(h.astype(np.float32), c.astype(np.float32), v, cls)


class Localizer(ABC):
    """Anything that localizes: ``localize(x) -> Localization``.

    Attributes:
        method: the method's name (``rmcl``, ``pit``, ``srp``, ...).
        K: hypotheses (slots) per frame.
        scored: whether confidences estimate the presence of a source.
        threshold: the default detection threshold.
        merge_deg: the radius of :func:`merge_nearby` before detection (0: none).
        slot_classes: ``[K]`` int64, the class of each slot for a localizer whose slots
            have fixed classes (class-aware multi-ACCDOA), else None. A localizer whose
            classes vary from frame to frame returns them from ``_localize`` instead.
        counts: whether its detections estimate the number of sources (frame recall is
            reported); None: as ``scored`` (True for a method without scores whose
            detections are its estimated sources: DCASE result files).
    """

    method: str
    K: int
    scored: bool
    threshold: float
    merge_deg: float = 0.0
    slot_classes: np.ndarray | None = None
    counts: bool | None = None

    def localize(self, x: Any) -> Localization:
        """Localize the frames of input ``x`` (its kind is the subclass's).

        The classes are those ``_localize`` returns, else :attr:`slot_classes` on every
        frame, else None (class-agnostic)."""
        hyps, conf, *rest = self._localize(x)
        valid = rest[0] if rest else None
        classes = rest[1] if len(rest) > 1 else self.slot_classes
        return checked(hyps, conf, valid, classes)

    @abstractmethod
    def _localize(self, x: Any) -> tuple[np.ndarray, ...]:
        """``(hyps, conf)``, ``(hyps, conf, valid)`` or ``(hyps, conf, valid, classes)``
        for input ``x`` (``valid`` may be None: every slot)."""


class ModelLocalizer(Localizer):
    """A trained network on feature chunks ``x [B, C, T, F]``: ``B * T`` frames out.

    Args:
        fn: ``fn(x float32 [B, C, T, F]) -> (hyps [B, T, K, 3], conf [B, T, K])``.
        spec: the features the model was trained on (``None`` when its run does not say).
        method, K, threshold, merge_deg: see :class:`Localizer`.
        backend: ``torch``, ``torchscript`` or ``onnx``.
        source: the artifact it came from.
        label: the name in reports (default: the method; ``rmcl*`` for rMCL*).
        slot_classes: ``[K]`` int class of each slot (:func:`accdoa_slot_classes`), or
            None: class-agnostic.
    """

    def __init__(self, fn: Callable, spec: FeatureSpec | None, method: str | None,
                 K: int, threshold: float, backend: str, source: Path,
                 label: str | None = None, slot_classes=None,
                 merge_deg: float = 0.0):  # fmt: skip
        self.fn = fn
        self.merge_deg = float(merge_deg)
        if slot_classes is not None:
            slot_classes = np.asarray(slot_classes, np.int64)
            if slot_classes.shape != (int(K),):
                raise ValueError(f"slot_classes has shape {slot_classes.shape}, expected ({K},)")
        self.slot_classes = slot_classes
        self.spec = spec
        self.method = str(method or "model")
        self.label = label or self.method
        self.K = int(K)
        self.scored = is_scored(method)
        self.threshold = float(threshold)
        self.backend = backend
        self.source = Path(source)

    def _localize(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fn(np.ascontiguousarray(x, np.float32))


def _torch_fn(module, device=None) -> Callable:
    import torch

    def fn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = torch.from_numpy(x)
        with torch.inference_mode():
            hyps, conf = module(t.to(device) if device is not None else t)
        return hyps.detach().float().cpu().numpy(), conf.detach().float().cpu().numpy()

    return fn


def onnx_fn(path: str | os.PathLike) -> Callable:
    """``fn(x) -> (hyps, conf)`` running an exported ONNX model (one onnxruntime session)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def fn(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hyps, conf = sess.run(list(ONNX_OUTPUTS), {ONNX_INPUT: np.asarray(x, np.float32)})
        return hyps, conf

    return fn


def accdoa_slot_classes(
    layout: dict[str, Any], k: int | None, path: Path, rebuild: str
) -> np.ndarray | None:
    """The class of each slot ``[K]`` of a class-aware multi-ACCDOA model, else None.

    ``AccdoaCRNN`` slots are class-major: slot ``k`` is track ``k % tracks`` of class
    ``k // tracks``. A model of one class is class-agnostic (its tracks are of no class of
    the data): None.

    Args:
        layout: ``{"tracks": N, "n_classes": C}``: the model's kwargs in ``model.json``
            or the ``multi_accdoa`` block of an export's ``io.json``.
        k: the slots the file declares (``K``; None or 0: not declared).
        path, rebuild: the file it comes from and the command that rebuilds it (messages).

    Raises:
        ArtifactError: ``tracks`` or ``n_classes`` not an integer >= 1, or ``N * C != k``.
    """
    check = readers.integer(1)
    readers.check_fields(layout, {"tracks": check, "n_classes": check}, path, rebuild)
    tracks, n_classes = int(layout.get("tracks", 3)), int(layout.get("n_classes", 1))
    if k and tracks * n_classes != k:
        raise readers.damaged(
            path, f"declares K = {k} slots but {tracks} tracks x {n_classes} classes", rebuild
        )
    if n_classes == 1:
        return None
    return np.arange(tracks * n_classes, dtype=np.int64) // tracks


def model_localizer(model, meta: dict[str, Any], source: Path, device=None) -> ModelLocalizer:
    """Wrap a loaded PyTorch model and its ``model.json`` description (a class-aware
    multi-ACCDOA model gets its :attr:`~Localizer.slot_classes`)."""
    spec = None
    if "feature_params" in meta:
        spec = FeatureSpec.from_dict(meta["feature_params"], source / "model.json", RUN_REBUILD)
    classes = None
    if meta.get("name") == "accdoa":
        classes = accdoa_slot_classes(meta.get("kwargs", {}), meta.get("K"),
                                      source / "model.json", RUN_REBUILD)  # fmt: skip
    return ModelLocalizer(
        _torch_fn(model, device), spec, meta.get("method"),
        int(meta.get("K", 0)), float(meta.get("threshold", 0.5)), "torch", source,
        slot_classes=classes, merge_deg=float(meta.get("merge_deg", 0.0)),
    )  # fmt: skip


def load_localizer(path: str | os.PathLike, backend: str = "auto") -> ModelLocalizer:
    """Open a ``run`` (PyTorch) or an ``export`` (TorchScript, else ONNX) artifact.

    Args:
        path: the artifact directory.
        backend: ``auto``, ``torch`` (runs only), ``torchscript`` or ``onnx`` (exports only).

    Raises:
        ArtifactError: not a run or an export, or the backend it lacks.
    """
    m = read_manifest(path, ("run", "export"))
    if m.kind == "run":
        if backend not in ("auto", "torch"):
            raise ArtifactError(f"{path} is a run; backend {backend!r} needs an export")
        from . import load_model

        model, meta = load_model(m.path)
        loc = model_localizer(model, meta, m.path)
        loc.label = method_label(loc.method, m.config)
        return loc
    io = read_io_json(m)
    files = io["files"]
    if backend == "auto":
        backend = "torchscript" if "torchscript" in files else "onnx"
    if backend not in files:
        raise ArtifactError(f"{path} has no {backend} model (it has: {', '.join(files)})")
    fn = _export_fn(m.file(files[backend]), backend)
    spec = FeatureSpec.from_dict(io["feature_params"], m.file("io.json"), EXPORT_REBUILD)
    classes = None
    if "multi_accdoa" in io:
        classes = accdoa_slot_classes(io["multi_accdoa"], io.get("K"), m.file("io.json"),
                                      EXPORT_REBUILD)  # fmt: skip
    return ModelLocalizer(fn, spec, io.get("method"), int(io.get("K") or 0),
                          float(io["threshold"]), backend, m.path, io.get("label"),
                          slot_classes=classes,
                          merge_deg=float(io.get("merge_deg", 0.0)))  # fmt: skip


#: The command that rebuilds an export (named in every damaged-file message).
EXPORT_REBUILD = "ssl export --force"
#: Fields of ``io.json`` the loaders rely on.
IO_FIELDS = {
    "feature_params": readers.mapping,
    "threshold": readers.number(0.0, 1.0),
    "merge_deg": readers.number(0.0, 180.0),
    "K": readers.optional(readers.integer(1)),
    "method": readers.optional(readers.text()),
    "label": readers.optional(readers.text()),
    "files": readers.mapping,
    "multi_accdoa": readers.mapping,
}


def read_io_json(export: Manifest) -> dict[str, Any]:
    """The checked ``io.json`` of an export artifact.

    Raises:
        ArtifactError: ``io.json`` missing, not a JSON object, a field missing or
            mistyped, or a model file outside the export.
    """
    path = export.file("io.json")
    io = readers.read_json_object(path, EXPORT_REBUILD)
    readers.check_fields(io, IO_FIELDS, path, EXPORT_REBUILD,
                         ("feature_params", "threshold", "files"))  # fmt: skip
    FeatureSpec.from_dict(io["feature_params"], path, EXPORT_REBUILD)
    files = io["files"]
    known = ("torchscript", "onnx")
    if not files or any(k not in known or not isinstance(v, str) for k, v in files.items()):
        raise readers.damaged(
            path, f"field 'files' must map torchscript/onnx to file names, got {files!r}",
            EXPORT_REBUILD,
        )  # fmt: skip
    for v in files.values():
        export.file(v)  # refuses a name that escapes the export
    return io


def _export_fn(path: Path, backend: str) -> Callable:
    """``fn(x) -> (hyps, conf)`` of an exported model file, refusing a damaged one."""
    if not path.is_file():
        raise readers.damaged(path, "is missing", EXPORT_REBUILD)
    try:
        if backend == "torchscript":
            import torch

            return _torch_fn(torch.jit.load(str(path), map_location="cpu"))
        return onnx_fn(path)
    except ImportError as e:
        raise UserError(
            f"{path}: loading it needs the ONNX extra ({e.name}); pip install 'ssl-toolkit[onnx]'"
        ) from e
    except Exception as e:  # torch / onnxruntime raise RuntimeError and their own types
        why = " ".join(str(e).split())[:160] or type(e).__name__
        raise readers.damaged(path, f"is not a loadable {backend} model ({why})",
                              EXPORT_REBUILD) from e  # fmt: skip

"""Export a trained run to TorchScript and/or ONNX, with an I/O description.

An export artifact (kind ``export``) holds:

- ``model.ts``: a traced TorchScript module, loadable with plain ``torch.jit.load``;
- ``model.onnx``: the same network for onnxruntime, with dynamic batch and time axes
  (needs the optional extra ``pip install ssl-toolkit[onnx]``);
- ``io.json``: input and output names, shapes, dtypes, units and axis meanings, the
  feature parameters the model was trained on, its detection threshold, method and K.

Both exported graphs keep the model's contract: raw features ``[B, C, T, F]`` in,
``(hyps [B, T, K, 3], conf [B, T, K])`` out, normalization inside. After writing
each file the export is run on a batch and a length that differ from the tracing
example and compared with PyTorch; a mismatch above ``atol`` fails the export and
nothing is left behind.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import ArtifactError, Manifest, build_artifact, read_manifest
from ..core.console import log
from ..core.errors import UserError
from ..features.spec import FeatureSpec
from ..models.localize import (
    ONNX_INPUT,
    ONNX_OUTPUTS,
    is_scored,
    method_label,
    onnx_fn,
    read_io_json,
)

EXPORT_FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}
IO_JSON = "io.json"
ONNX_OPSET = 17
#: Largest absolute difference allowed between an exported model and PyTorch.
ATOL = 1e-4

INPUT_NAME, OUTPUT_NAMES = ONNX_INPUT, ONNX_OUTPUTS


def onnx_available() -> str | None:
    """``None`` when the ONNX extra is installed, else the reason it is not usable."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"the ONNX extra is not installed ({e.name}); pip install 'ssl-toolkit[onnx]'"
    return None


def input_shape(run: Manifest, meta: dict[str, Any]) -> tuple[int, int, int]:
    """``(C, T, F)`` of the chunks the run was trained on (``input_shape`` of model.json).

    Raises:
        ArtifactError: when model.json does not record it (a run older than the field).
    """
    shape = meta.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0
                                                                for v in shape)):  # fmt: skip
        raise ArtifactError(
            f"{run.path / 'model.json'}: field 'input_shape' must be [C, T, F] positive "
            f"integers, got {shape!r} (retrain the run with `ssl train ... --force`)"
        )
    return tuple(shape)


def io_description(
    meta: dict[str, Any], spec: FeatureSpec, channels: int, bins: int, formats
) -> dict[str, Any]:
    """The ``io.json`` content: how to feed the exported model and read its outputs."""
    k = int(meta.get("K", 0)) or None
    io = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": ["batch", channels, "frames", bins],
                "dtype": "float32",
                "axes": ["batch", "feature channel", "time frame", "frequency bin"],
                "units": f"raw (un-normalized) {spec.type} features, as "
                "ssl_toolkit.features.extract.extract computes them",
            }
        ],
        "outputs": [
            {
                "name": "hyps",
                "shape": ["batch", "frames", k or "K", 3],
                "dtype": "float32",
                "axes": ["batch", "time frame", "hypothesis", "xyz"],
                "units": "unit vectors in the DCASE frame (x front, y left, z up)",
            },
            {
                "name": "conf",
                "shape": ["batch", "frames", k or "K"],
                "dtype": "float32",
                "axes": ["batch", "time frame", "hypothesis"],
                "units": "confidence in (0, 1); detected when >= threshold, after hypotheses "
                "within merge_deg of a more confident one are merged into it (confidences "
                "summed, directions averaged with them as weights)",
            },
        ],
        "frame_hop_s": spec.hop_s,
        "feature_params": spec.to_dict(),
        "threshold": float(meta.get("threshold", 0.5)),
        "merge_deg": float(meta.get("merge_deg", 0.0)),
        "method": meta.get("method"),
        "scored": is_scored(meta.get("method")),
        "K": k,
        "model": {"name": meta.get("name"), "kwargs": meta.get("kwargs", {})},
        "files": {f: FILES[f] for f in formats},
        "onnx_opset": ONNX_OPSET if "onnx" in formats else None,
    }
    if meta.get("name") == "accdoa":
        io["multi_accdoa"] = accdoa_slots(meta.get("kwargs", {}))
    return io


def accdoa_slots(kwargs: dict[str, Any]) -> dict[str, Any]:
    """How the outputs of a multi-ACCDOA model (``AccdoaCRNN``) map to tracks and classes."""
    return {
        "tracks": kwargs.get("tracks", 3),
        "n_classes": kwargs.get("n_classes", 1),
        "slot_order": "class-major: slot k is track k % tracks of class k // tracks",
        "conf": "norm of the track's ACCDOA vector, clipped to [0, 1]",
        "empty_slots": "zero vector and conf 0: a track unified with an earlier track of "
        f"its class closer than {kwargs.get('unify_deg', 15.0)} degrees (the group's slot "
        "holds the direction of their mean and their largest norm)",
    }


def _max_diff(a, b) -> float:
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b, strict=True)
    )


def _check(name: str, run, want, atol: float) -> float:
    """Run the exported model (``run()``) and compare it with PyTorch's outputs ``want``."""
    try:
        got = run()
    except Exception as e:  # a traced graph with a frozen shape fails on a new one
        raise ArtifactError(
            f"exported {name} model fails on a new batch/length ({type(e).__name__}); "
            "the model is probably not traceable with variable B and T"
        ) from e
    diff = _max_diff(got, want)
    if not np.isfinite(diff) or diff > atol:
        raise ArtifactError(
            f"exported {name} model differs from PyTorch by {diff:.3g} > {atol:g} on a "
            "new batch/length; the model is probably not traceable with variable B and T"
        )
    return diff


def export_torchscript(model, example, path: Path) -> None:
    """Trace ``model`` on ``example`` ``[B, C, T, F]`` and save it to ``path``."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
    traced.save(str(path))


def export_onnx(model, example, path: Path, opset: int = ONNX_OPSET) -> None:
    """Write ``model`` as ONNX with dynamic batch and time axes.

    Uses the TorchScript-based exporter, which keeps recurrent layers valid for any
    batch and length (torch 2.13's dynamo exporter bakes the length into reshapes of
    GRU outputs).
    """
    import torch

    axes = {
        INPUT_NAME: {0: "batch", 2: "frames"},
        "hyps": {0: "batch", 1: "frames"},
        "conf": {0: "batch", 1: "frames"},
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def run_onnx(path: str | os.PathLike, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run an exported ONNX model with onnxruntime on ``x`` ``[B, C, T, F]``."""
    return onnx_fn(path)(x)


def _check_formats(formats) -> tuple[str, ...]:
    from ..core.config import choose

    formats = tuple(dict.fromkeys(choose("format", f, EXPORT_FORMATS) for f in formats))
    if not formats:
        raise UserError("--format: give at least one of torchscript, onnx")
    if "onnx" in formats and (why := onnx_available()):
        raise UserError(f"--format onnx: {why}")
    return formats


def export_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    formats=("torchscript",),
    force: bool = False,
    atol: float = ATOL,
) -> Manifest:
    """Export a trained run as an ``export`` artifact.

    Args:
        run: a ``run`` artifact (``ssl train``).
        out: the export directory to write.
        formats: any of ``"torchscript"``, ``"onnx"``.
        force: rebuild ``out`` even when it holds an up-to-date or another export.
        atol: largest difference to PyTorch accepted by the numerical check.

    Returns:
        The export's manifest; ``extra["max_abs_diff"]`` has the check's result per format.

    Raises:
        UserError: unknown format or ONNX extra missing.
        ArtifactError: wrong input, or an export that does not reproduce PyTorch.
    """
    import torch

    from ..models import REBUILD, load_model

    formats = _check_formats(formats)
    run_m = read_manifest(run, "run")
    model, meta = load_model(run_m.path)
    channels, frames, bins = input_shape(run_m, meta)
    spec = FeatureSpec.from_dict(meta.get("feature_params"), run_m.path / "model.json", REBUILD)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, channels, frames, bins, generator=gen)
    probe = torch.randn(3, channels, frames + 13, bins, generator=gen)  # (B, C, T, F)
    with torch.no_grad():
        want = [t.numpy() for t in model(probe)]
    cfg = {"formats": list(formats), "onnx_opset": ONNX_OPSET if "onnx" in formats else None}
    with build_artifact(out, "export", cfg, [run_m], force=force, log=log) as b:
        if b.reused:
            return b.manifest
        diffs = {}
        if "torchscript" in formats:
            export_torchscript(model, example, b.dir / FILES["torchscript"])
            ts = torch.jit.load(str(b.dir / FILES["torchscript"]))

            def run_ts():
                with torch.no_grad():
                    return [t.numpy() for t in ts(probe)]

            diffs["torchscript"] = _check("TorchScript", run_ts, want, atol)
        if "onnx" in formats:
            export_onnx(model, example, b.dir / FILES["onnx"])
            onnx_path = b.dir / FILES["onnx"]
            diffs["onnx"] = _check("ONNX", lambda: run_onnx(onnx_path, probe.numpy()), want, atol)
        io = io_description(meta, spec, channels, bins, formats)
        io["label"] = method_label(io["method"], run_m.config)
        (b.dir / IO_JSON).write_text(json.dumps(io, indent=2) + "\n")
        b.extra.update({"max_abs_diff": diffs, "K": io["K"], "method": io["method"]})
        log(f"exported {', '.join(formats)} to {out}; max |diff| vs PyTorch: {diffs}")
    return b.manifest


def read_io(export: str | os.PathLike) -> tuple[Manifest, dict[str, Any]]:
    """The manifest and checked ``io.json`` of an export artifact.

    Raises:
        ArtifactError: not an export, or a damaged ``io.json`` (one line naming it).
    """
    m = read_manifest(export, "export")
    return m, read_io_json(m)

"""The code paths of GPU training, exercised on a CPU: bf16 autocast (amp_dtype = "bf16"),
`torch.compile`, an AMP checkpoint resumed in fp32, and devices this machine lacks."""

import functools
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.training import TrainConfig, train
from ssl_toolkit.training.runtime import amp_dtype_for

TINY = {"channels": [8, 8], "pools": [4, 4], "gru_layers": 1, "gru_units": 16}
TOML = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"


def cfg(**kw):
    return resolve(TrainConfig, TINY, kw)


def finite_weights(run) -> dict:
    w = load_file(str(Path(run) / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())
    return w


@pytest.fixture
def output_dtypes():
    """The output dtypes of every module's forward while the test runs, by module class."""
    seen: dict[str, set] = {}

    def hook(module, _inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, torch.Tensor):
            seen.setdefault(type(module).__name__, set()).add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


def test_amp_on_cpu_trains_a_real_step_in_bf16_autocast(tiny_features, tmp_path, output_dtypes):
    out = tmp_path / "run"
    man = train(
        tiny_features.path,
        out,
        cfg(device="cpu", amp_dtype="bf16", epochs=1, max_steps=1, batch_size=6),
    )
    assert man.extra["precision"] == "bf16 autocast"
    for layer in ("Conv2d", "GRU", "Linear"):  # the layers autocast runs in bf16
        assert torch.bfloat16 in output_dtypes[layer], layer
    hist = pd.read_csv(out / "history.csv")
    assert hist["step"].tolist() == [1] and hist["train_loss"].notna().all()
    finite_weights(out)


def test_autocast_dtypes_by_device_and_option():
    """auto: CUDA only (fp32 on CPU: bf16 is slower than fp32 on CPUs without native bf16);
    bf16 on CPU when asked; a dtype the device cannot autocast to is refused by name."""
    cpu = torch.device("cpu")
    assert amp_dtype_for(cpu, True) is None and amp_dtype_for(cpu, True, "auto") is None
    assert amp_dtype_for(cpu, True, "bf16") == torch.bfloat16
    assert amp_dtype_for(cpu, False, "bf16") is None  # --no-amp wins
    assert amp_dtype_for(torch.device("mps"), True) is None
    for device, dtype in (("cpu", "fp16"), ("mps", "bf16")):
        with pytest.raises(ConfigError, match=rf"'amp_dtype' is '{dtype}'.*not on {device}"):
            amp_dtype_for(torch.device(device), True, dtype)
    with pytest.raises(ConfigError, match="--amp-dtype: 'int8' is not one of"):
        resolve(TrainConfig, {"amp_dtype": "int8"})


def _interrupt_after_first_epoch(monkeypatch):
    """The next checkpoint write raises KeyboardInterrupt once the file is on disk."""
    from ssl_toolkit.training import engine

    real = engine._save_checkpoint

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        monkeypatch.setattr(engine, "_save_checkpoint", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_save_checkpoint", save_then_stop)


def test_a_checkpoint_written_under_amp_resumes_in_fp32(tiny_features, tmp_path, monkeypatch):
    """Trained one epoch in bf16 autocast and interrupted, then `ssl train --resume --no-amp`
    (the stored config otherwise): the run goes on in fp32 from the checkpoint."""
    from ssl_toolkit.cli import app

    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    out = tmp_path / "run"
    ckpt = tmp_path / ".run.partial" / "checkpoint" / "state.pt"
    _interrupt_after_first_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_features.path, out, cfg(amp_dtype="bf16", epochs=4, batch_size=6, lr=3e-3, K=3))
    saved = torch.load(ckpt, weights_only=True)
    assert saved["state"]["epoch"] == 1 and saved["scaler"] == {}  # bf16: no loss scaling
    first = saved["state"]["history"][0]

    res = CliRunner().invoke(
        app, ["train", str(tiny_features.path), str(out), "--resume", "--no-amp"]
    )
    assert res.exit_code == 0, res.output
    assert "fp32" in res.output and "resuming after epoch 1" in res.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["extra"]["precision"] == "fp32" and man["config"]["amp"] is False
    assert man["config"]["amp_dtype"] == "bf16"  # kept from the stored config, unused
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3, 4] and hist["step"].tolist() == [3, 6, 9, 12]
    assert hist["train_loss"].iloc[0] == pytest.approx(first["train_loss"])
    # the loss goes on from where bf16 left it (not from a fresh model), and down
    assert hist["train_loss"].iloc[1] < 1.05 * first["train_loss"]
    assert hist["train_loss"].iloc[-1] < first["train_loss"]
    w = finite_weights(out)
    assert any(not torch.equal(w[k], saved["model"][k]) for k in w)  # it trained on


@functools.cache
def _inductor_problem() -> str | None:
    """Why torch.compile cannot run here (no C++ toolchain, ...), or None."""
    try:
        fn = torch.compile(lambda x: torch.sin(x) * 2 + 1, backend="inductor")
        x = torch.linspace(0, 1, 8)
        torch.testing.assert_close(fn(x), torch.sin(x) * 2 + 1)
    except Exception as e:  # noqa: BLE001 (any failure means: no working compiler here)
        return f"torch.compile (inductor) cannot compile here: {type(e).__name__}: {e}"[:300]
    return None


def test_compile_on_cpu_trains_a_real_step_like_eager(tiny_features, tmp_path):
    problem = _inductor_problem()
    if problem:
        pytest.skip(problem)
    hist = {}
    for compiled in (False, True):
        out = tmp_path / f"run{int(compiled)}"
        c = cfg(device="cpu", compile=compiled, epochs=1, max_steps=1, batch_size=6, seed=3)
        man = train(tiny_features.path, out, c)
        assert man.config["compile"] is compiled
        hist[compiled] = pd.read_csv(out / "history.csv")
        finite_weights(out)
    # the compiled graph computes what eager does (the loss of the first step, from the same
    # initial weights); after one AdamW step (about lr * sign(gradient) at first) the weights
    # differ a little where gradients are near zero, so the validation loss only nearly
    ratio = {c: hist[True][c].iloc[0] / hist[False][c].iloc[0] for c in ("train_loss", "val_loss")}
    assert ratio["train_loss"] == pytest.approx(1, abs=1e-5)
    assert ratio["val_loss"] == pytest.approx(1, abs=1e-2)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_device_this_machine_lacks_is_one_line_naming_the_option(tiny_features, tmp_path, device):
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"this machine has {device}")
    from ssl_toolkit.cli import app

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_features.path), str(out), "--device", device])
    assert res.exit_code == 1 and f"--device {device}" in res.output, res.output
    assert res.output.strip().count("\n") == 0 and "Traceback" not in res.output
    assert not out.exists()

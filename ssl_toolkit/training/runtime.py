"""Devices, seeds, determinism, mixed precision and DistributedDataParallel."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..core.config import ConfigError
from ..core.errors import UserError


@dataclass
class Runtime:
    """Where and how this process trains.

    Attributes:
        device: the torch device.
        rank, world: this process's rank and the number of processes (1 without DDP).
        amp_dtype: autocast dtype (bf16 or fp16 on CUDA, bf16 on CPU), or None (fp32).
    """

    device: torch.device
    rank: int = 0
    world: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def main(self) -> bool:
        """True on the process that writes files and shows progress."""
        return self.rank == 0

    def autocast(self):
        """Mixed-precision context for the forward pass (a no-op without AMP)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum ``values`` over processes."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def _comm_device(self) -> torch.device:
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA, else MPS, else CPU. Refuses a device this machine lacks.

    Raises:
        UserError: naming ``--device`` when the device is unavailable.
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            why = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            raise UserError(f"--device cuda: no CUDA device is available here{why}")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: MPS (Apple GPU) is not available here")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; switch deterministic algorithms on if asked."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may use the legacy RNG)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def amp_dtype_for(device: torch.device, amp: bool, dtype: str = "auto") -> torch.dtype | None:
    """The autocast dtype on ``device`` of TrainConfig's ``amp`` and ``amp_dtype``; None: fp32.

    ``auto``: bf16 on CUDA where supported, else fp16 (with loss scaling); fp32 on CPU
    and MPS. ``bf16``: on CUDA and CPU. ``fp16``: on CUDA.

    Raises:
        ConfigError: naming ``amp_dtype`` for a dtype the device cannot autocast to.
    """
    if not amp:
        return None
    if dtype == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    ok = {"bf16": ("cuda", "cpu"), "fp16": ("cuda",)}[dtype]
    if device.type not in ok:
        raise ConfigError(
            f"option 'amp_dtype' is {dtype!r}: autocast to {dtype} runs on "
            f"{' and '.join(d.upper() for d in ok)}, not on {device.type}; use amp_dtype "
            "'auto' or --no-amp"
        )
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("option 'amp_dtype' is 'bf16' but this GPU lacks bf16; use 'auto'")
    return torch.bfloat16 if dtype == "bf16" else torch.float16


def setup(device: str, amp: bool, amp_dtype: str = "auto") -> Runtime:
    """The runtime of this process; joins the process group when run by torchrun.

    ``torchrun --nproc-per-node N -m ssl_toolkit train ...`` sets ``WORLD_SIZE``,
    ``RANK`` and ``LOCAL_RANK``; the backend is NCCL on CUDA and gloo otherwise.
    ``amp`` and ``amp_dtype`` as in :func:`amp_dtype_for`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    dtype = amp_dtype_for(dev, amp, amp_dtype)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group(backend)
    return Runtime(dev, rank, world, dtype)


def teardown(rt: Runtime) -> None:
    """Leave the process group (if this process joined one)."""
    if rt.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rng_state() -> dict[str, torch.Tensor]:
    """Torch RNG states (CPU and CUDA) as tensors, for a checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))

"""Where and in which precision models run: one setting, checked before any work starts.

A device is ``cpu``, ``cuda`` or ``cuda:N``. :func:`resolve_device` turns the name into a
:class:`torch.device` or raises :class:`DeviceError` (a ``ValueError``: the CLI reports it in one line with
exit code 2) when CUDA or that GPU is absent. :func:`strict_float32` turns TF32 off, so float32 matrix
products on a GPU keep their 24-bit mantissa (audits compare round-off floors across devices).
:func:`precision` runs a block in TF32 or bfloat16 autocast (training only; see benchmarks/train_gpu.py for the
check that decides). :func:`memory_budget` is the number of bytes one batched forward pass may use on a device.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

DEVICES = "cpu, cuda or cuda:N"
# On a CPU, passes larger than the caches are slower per copy, not faster: the budget is the activation
# memory of the pass that was fastest per copy in benchmarks/engine_throughput.py part (d)'s chunk sweep.
CPU_PASS_BYTES = 128 * 2**20
GPU_FREE_FRACTION = 0.5  # of the memory free at the time of the call; the rest absorbs transient peaks


class DeviceError(ValueError):
    """A device that cannot be used here; the message names it and what is available."""


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The :class:`torch.device` called ``name`` (None: cpu); :class:`DeviceError` if it is not available."""
    if isinstance(name, torch.device):
        name = str(name)
    text = "cpu" if name is None else str(name).strip().lower()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"device {name!r}: expected {DEVICES}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise DeviceError(f"device {name!r}: expected {DEVICES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                          f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu")
    count = torch.cuda.device_count()
    index = 0 if device.index is None else device.index
    if index >= count:
        raise DeviceError(f"device {name!r}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def strict_float32() -> None:
    """Turn off TF32 in matrix products and convolutions (a 10-bit mantissa would read as symmetry breaking)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


PRECISIONS = ("float32", "tf32", "bf16")


@contextmanager
def precision(name: str, device: torch.device) -> Iterator[None]:
    """Run the block's float32 work in precision ``name``: ``float32`` strict (TF32 off), ``tf32`` (TF32 matrix
    products, CUDA only) or ``bf16`` (bfloat16 autocast on ``device``). The previous TF32 settings come back after."""
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r}: expected one of {', '.join(PRECISIONS)}")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def memory_budget(device: torch.device) -> int:
    """Bytes of activation memory one forward-and-backward pass may use on ``device``.

    CUDA: half the memory free now. CPU: :data:`CPU_PASS_BYTES` (``SYMPROBE_CPU_PASS_MB`` overrides it).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(GPU_FREE_FRACTION * free)
    override = os.environ.get("SYMPROBE_CPU_PASS_MB")
    return int(float(override) * 2**20) if override else CPU_PASS_BYTES


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU's model for CUDA, else the device string."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)

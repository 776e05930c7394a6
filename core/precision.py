"""The arithmetic of training steps: float32, or bfloat16 matrix products where the hardware runs them fast."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

import torch

from .errors import MinecliError

PRECISIONS = ("auto", "float32", "bf16")
# auto trains in bf16 only when a float stream's window is this wide: there the first layer's matrix
# product is most of a step and bf16 runs it 2.5x faster (513 x 3 values: 124k -> 308k pairs/s). On
# narrow real-speech features it bought less and cost accuracy: MFCC (13 dims) t vs t+30 ms came out
# 0.15 nats (5%) lower than in float32 at two seeds, while log-mel and mel bands moved by -0.04..+0.09.
BF16_MIN_WIDTH = 512
# CPU flags of native bfloat16 dot products: without them torch emulates bf16 matmuls, slower than float32.
FAST_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: no way to tell, so no bf16 by default
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(f in flags for f in FAST_BF16_FLAGS)
    return False


def device_has_fast_bf16(device: torch.device) -> bool:
    """True when `device` runs bfloat16 matrix products natively (not emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return device.type == "cpu" and cpu_has_fast_bf16()


def resolve_precision(name: str, device: torch.device, float_width: int = BF16_MIN_WIDTH) -> str:
    """'float32' or 'bf16' for training.precision `name` on `device`; auto: bf16 where it is native and a
    float stream's window (dim x context frames) is at least BF16_MIN_WIDTH values wide."""
    if name not in PRECISIONS:
        raise MinecliError(f"training.precision must be auto, float32 or bf16, not {name!r}")
    if name == "auto":
        return "bf16" if device_has_fast_bf16(device) and float_width >= BF16_MIN_WIDTH else "float32"
    if name == "bf16" and device.type == "cuda" and not device_has_fast_bf16(device):
        raise MinecliError(f"training.precision is bf16 but {device} has no native bfloat16; use float32 or auto")
    return name


def autocast(precision: str, device: torch.device) -> Any:
    """The context of a training step's forward pass: bfloat16 autocast under bf16, else nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def takes_bf16_input(head: torch.nn.Module) -> bool:
    """True when a float stream may reach `head` already in bfloat16 under bf16 training.

    The built-in float heads pass frames straight to a Linear layer (theirs or the critic's first),
    which autocast casts to bfloat16 anyway: casting while the batch is prepared gives the same
    numbers, and in the background thread it costs the step nothing. Other heads get float32.
    """
    from .nets import ProjectionHead

    return type(head) is ProjectionHead


__all__ = ["PRECISIONS", "autocast", "cpu_has_fast_bf16", "device_has_fast_bf16", "resolve_precision",
           "takes_bf16_input"]

"""Which torch device extraction and training run on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, one per local rank."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch


def local_rank() -> int | None:
    """The process's GPU slot on its node when launched by torchrun (LOCAL_RANK), else None."""
    value = os.environ.get("LOCAL_RANK")
    if value is None or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return int(value)


def resolve_device(name: str | None, where: str = "extraction.device") -> "torch.device":
    """Turn a device name into a torch.device; under torchrun, ``auto`` and ``cuda`` mean cuda:LOCAL_RANK."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{where}: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"{where}: device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if dev.type == "cpu":
        return dev
    if not torch.cuda.is_available():
        raise ConfigError(f"{where} is {name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    count = torch.cuda.device_count()
    index = dev.index
    if index is None:
        # One GPU per process: torchrun's LOCAL_RANK picks it, so N processes on a node use N GPUs.
        rank = local_rank()
        index = rank if rank is not None else torch.cuda.current_device()
    if index >= count:
        raise ConfigError(f"{where}: cuda:{index} does not exist (this machine has {count} CUDA device"
                          f"{'s' if count != 1 else ''}); use cuda:0..cuda:{count - 1}, or start at most "
                          f"{count} processes per node")
    return torch.device("cuda", index)


__all__ = ["local_rank", "resolve_device"]

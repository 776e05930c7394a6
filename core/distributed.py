"""Extraction over several processes: job-array shards (``--shard i/n``) and torchrun ranks.

Files are split by position in the sorted list of a split's paths (round robin), so every process
computes the same split without talking to the others, and each file falls to exactly one process.
Processes share the feature cache through the filesystem; under torchrun (WORLD_SIZE > 1) they also
join a gloo process group, to wait for each other, gather what each one extracted, and train under
DistributedDataParallel (trainer.py).
"""
from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MinecliError

#: added per rank to the training sampler's seed, so that ranks draw different frames (rank 0 keeps the
#: single-process seed)
RANK_SEED_STRIDE = 1_000_003

#: how long a rank waits at a barrier for the slowest rank's extraction (hours of audio per rank are normal)
BARRIER_TIMEOUT = datetime.timedelta(hours=float(os.environ.get("MINECLI_BARRIER_HOURS", "24")))


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count`: the files it extracts."""

    index: int = 0
    count: int = 1

    def take(self, paths: Sequence[str]) -> list[int]:
        """Positions in `paths` that fall to this shard: every count-th path of the sorted list."""
        if self.count == 1:
            return list(range(len(paths)))
        order = sorted(range(len(paths)), key=lambda i: paths[i])
        return sorted(order[self.index::self.count])

    def within(self, outer: "Shard") -> "Shard":
        """This rank's share of a job-array shard: shard i/n split over W ranks is (i + n*rank)/(n*W), so
        the ranks together take exactly the files of shard i/n."""
        return Shard(outer.index + outer.count * self.index, outer.count * self.count)

    def describe(self) -> str:
        """'shard i/n'."""
        return f"shard {self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Read ``i/n`` (0 <= i < n), the form of ``minecli extract --shard``."""
    parts = str(text).strip().split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise MinecliError(f"--shard {text!r} is not of the form i/n; use e.g. --shard 0/4 (shards 0/4 to 3/4 "
                           "together cover every file)") from None
    if count < 1 or not 0 <= index < count:
        raise MinecliError(f"--shard {text}: the index must be between 0 and {max(count, 1) - 1} for {count} "
                           f"shards; use --shard 0/{max(count, 1)} .. {max(count, 1) - 1}/{max(count, 1)} "
                           "(e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with a 0-based array)")
    return Shard(index, count)


def launched() -> Shard:
    """This process's rank and world size under torchrun (RANK, WORLD_SIZE), else Shard(0, 1)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        raise MinecliError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must "
                           "be integers; start minecli with torchrun, which sets them") from None
    if world < 1 or not 0 <= rank < world:
        raise MinecliError(f"RANK={rank} does not fit WORLD_SIZE={world}; start minecli with torchrun, which sets "
                           "both")
    return Shard(rank, world)


def init_group() -> bool:
    """Join torchrun's process group when WORLD_SIZE > 1; True when this call created it."""
    import torch.distributed as dist

    if launched().count <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    # gloo whatever the device: the default group carries barriers and small Python objects; training
    # on GPUs reduces its gradients over a NCCL group of its own (training_group).
    dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return True


def active() -> bool:
    """True inside a process group of more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    import torch.distributed as dist

    if active():
        dist.barrier()


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order ([obj] in a single process)."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank() -> int:
    """This process's rank in the process group (0 in a single process)."""
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of ranks in the process group (1 in a single process)."""
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (`obj` itself in a single process)."""
    import torch.distributed as dist

    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(value: float) -> float:
    """The mean of `value` over the ranks, in float64 (`value` itself in a single process)."""
    import torch
    import torch.distributed as dist

    if not active():
        return value
    t = torch.tensor(float(value), dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def training_group(device: Any) -> Any:
    """The process group DistributedDataParallel reduces gradients over: NCCL for CUDA, else the gloo group.

    The default group stays gloo (barriers and Python objects between ranks); gradients on GPUs go
    through a NCCL group made for them. Every rank must call this, on the same kind of device.
    """
    import torch.distributed as dist

    if getattr(device, "type", "cpu") == "cuda":
        return dist.new_group(backend="nccl")
    return None


def close_group(created: bool) -> None:
    """Leave the process group if `created` says this process made it."""
    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["BARRIER_TIMEOUT", "RANK_SEED_STRIDE", "Shard", "active", "barrier", "broadcast", "close_group", "gather",
           "init_group", "launched", "mean", "parse_shard", "rank", "training_group", "world_size"]

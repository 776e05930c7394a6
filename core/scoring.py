"""Scoring a split with a critic: joint and marginal scores of every frame, chunked to bound memory.

Inside a torchrun process group scoring can be sharded by frame (``sharded=True``): each rank encodes
and scores its share of the frames, and rank 0 receives the scores one process would have computed.
"""
from __future__ import annotations

import torch

from .data import FrameBank


@torch.no_grad()
def score_bank(critic: torch.nn.Module, bank: FrameBank, neg: torch.Tensor | int, cx: int, cy: int,
               device: torch.device, chunk: int = 8192, gen: torch.Generator | None = None,
               sharded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic scores of every frame's joint pair ``[N]`` and its marginal pairs ``[N, K]``.

    ``neg`` is either fixed negative indices ``[N, K]`` or K: then negatives from other
    utterances are drawn chunk by chunk with `gen`, so their index arrays never exist for the
    whole split at once (they cost far more memory than the scores).

    With ``sharded`` inside a process group of several ranks, every rank must call this with the same
    arguments (and the same critic): each scores its share of the frames, rank 0 receives the scores of
    every frame in frame order and the other ranks get zero rows (``[0]`` and ``[0, K]``). `gen` ends
    in the same state on every rank as in one process.
    """
    from .distributed import active

    if sharded and active():
        return _score_sharded(critic, bank, neg, cx, cy, device, chunk, gen)
    was_training = critic.training
    critic.eval()
    ay = _encode_y(critic, bank, cy, device, chunk, 0, bank.n_frames)
    tj, tm = _score_rows(critic, bank, neg, cx, ay, device, chunk, gen, 0, bank.n_frames)
    critic.train(was_training)
    return tj, tm


def _encode_y(critic: torch.nn.Module, bank: FrameBank, cy: int, device: torch.device, chunk: int, lo: int,
              hi: int) -> torch.Tensor:
    """The critic's y encodings of frames [lo, hi), chunk by chunk."""
    parts = [critic.encode_y(bank.y[bank.windows(torch.arange(s, min(s + chunk, hi)), cy)].to(device))
             for s in range(lo, hi, chunk)]
    if not parts:  # a share of no frames (fewer frames than ranks): one frame's encoding gives shape and dtype
        parts.append(critic.encode_y(bank.y[bank.windows(torch.arange(1), cy)].to(device))[:0])
    return torch.cat(parts)


def _score_rows(critic: torch.nn.Module, bank: FrameBank, neg: torch.Tensor | int, cx: int, ay: torch.Tensor,
                device: torch.device, chunk: int, gen: torch.Generator | None, lo: int,
                hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint ``[hi - lo]`` and marginal ``[hi - lo, K]`` scores of frames [lo, hi) against the encodings `ay` of
    every frame.

    Drawn negatives are drawn for every chunk of the whole split, whatever the share, so that each frame
    gets the negatives (and `gen` the state) of a single process that scores them all.
    """
    n = bank.n_frames
    k = neg if isinstance(neg, int) else neg.shape[1]
    rows = max(1, chunk // max(1, k))
    tj_parts, tm_parts = [torch.zeros(0)], [torch.zeros(0, k)]
    for s in range(0, n, rows) if isinstance(neg, int) else range(lo, hi, rows):
        e = min(s + rows, n)
        drawn = bank.other_utterance_frames(gen, torch.arange(s, e), k) if isinstance(neg, int) else None
        a, b = max(s, lo), min(e, hi)
        if a >= b:
            continue
        frames = torch.arange(a, b)
        nf = neg[frames] if drawn is None else drawn[a - s: b - s]
        ax = critic.encode_x(bank.x[bank.windows(frames, cx)].to(device))
        tj, tm = critic.score_negatives(ax, ay[frames.to(device)], ay, nf.to(device))
        tj_parts.append(tj.float().cpu())
        tm_parts.append(tm.float().cpu())
    return torch.cat(tj_parts), torch.cat(tm_parts)


def shard_bounds(n: int, world: int) -> list[int]:
    """Frame boundaries of `world` contiguous shares of `n` frames: rank r scores ``[b[r], b[r + 1])``."""
    return [n * r // world for r in range(world + 1)]


def _gather_rows(own: torch.Tensor, bounds: list[int], everywhere: bool) -> list[torch.Tensor] | None:
    """Every rank's rows (its share of `bounds`), one tensor per rank in rank order, on every rank or only on
    rank 0 (None elsewhere)."""
    import torch.distributed as dist

    me, world = dist.get_rank(), len(bounds) - 1
    size = max(b - a for a, b in zip(bounds, bounds[1:]))
    # Collectives need one size on every rank: shares differ by a frame at most, so pad to the largest.
    padded = torch.cat([own, own.new_zeros((size - own.shape[0], *own.shape[1:]))]) if own.shape[0] < size else own
    padded = padded.contiguous()
    if everywhere:
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
    else:
        parts = [torch.empty_like(padded) for _ in range(world)] if me == 0 else None
        dist.gather(padded, parts, dst=0)
        if parts is None:
            return None
    return [p[: b - a] for p, a, b in zip(parts, bounds, bounds[1:])]


def _score_sharded(critic: torch.nn.Module, bank: FrameBank, neg: torch.Tensor | int, cx: int, cy: int,
                   device: torch.device, chunk: int, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """score_bank over the ranks of the process group: encodings all-gathered, scores gathered on rank 0."""
    import torch.distributed as dist

    n, me = bank.n_frames, dist.get_rank()
    bounds = shard_bounds(n, dist.get_world_size())
    lo, hi = bounds[me], bounds[me + 1]
    k = neg if isinstance(neg, int) else neg.shape[1]
    was_training = critic.training
    critic.eval()
    # Through the CPU: the default group is gloo, and each rank may sit on a GPU of its own.
    own_ay = _encode_y(critic, bank, cy, device, chunk, lo, hi).cpu()
    ay = torch.cat(_gather_rows(own_ay, bounds, everywhere=True)).to(device)
    tj, tm = _score_rows(critic, bank, neg, cx, ay, device, chunk, gen, lo, hi)
    critic.train(was_training)
    own = torch.cat([tj[:, None], tm], 1)
    # One gather of [rows, 1 + K] (joint score first) rather than one per tensor; scores stay on rank 0
    # alone: on a large test split they would cost every rank as much memory as the whole split.
    parts = _gather_rows(own, bounds, everywhere=False)
    if parts is None:
        return torch.zeros(0), torch.zeros(0, k)
    return torch.cat([p[:, 0] for p in parts]), torch.cat([p[:, 1:] for p in parts])


def valid_protocol(valid: FrameBank, max_frames: int, negatives: int, seed: int) -> tuple[FrameBank, torch.Tensor]:
    """A fixed subset of validation utterances and fixed negatives, so validations compare."""
    gen = torch.Generator().manual_seed(seed + 2)
    bank = valid
    if bank.n_frames > max_frames:
        order = torch.randperm(bank.n_utts, generator=gen)
        lengths = (bank.offsets[1:] - bank.offsets[:-1])[order]
        keep = int(torch.searchsorted(torch.cumsum(lengths, 0), torch.tensor(max_frames)))
        bank = bank.subset_utts(torch.sort(order[: max(2, keep)]).values)
    frames = torch.arange(bank.n_frames)
    neg = bank.other_utterance_frames(gen, frames, negatives)
    return bank, neg

"""Scoring a split with a critic: joint and marginal scores of every frame, chunked to bound memory."""
from __future__ import annotations

import torch

from .data import FrameBank


@torch.no_grad()
def score_bank(critic: torch.nn.Module, bank: FrameBank, neg: torch.Tensor | int, cx: int, cy: int,
               device: torch.device, chunk: int = 8192,
               gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic scores of every frame's joint pair ``[N]`` and its marginal pairs ``[N, K]``.

    ``neg`` is either fixed negative indices ``[N, K]`` or K: then negatives from other
    utterances are drawn chunk by chunk with `gen`, so their index arrays never exist for the
    whole split at once (they cost far more memory than the scores).
    """
    was_training = critic.training
    critic.eval()
    ay_parts = []
    for s in range(0, bank.n_frames, chunk):
        frames = torch.arange(s, min(s + chunk, bank.n_frames))
        y = bank.y[bank.windows(frames, cy)]
        ay_parts.append(critic.encode_y(y.to(device)))
    ay = torch.cat(ay_parts)
    tj_parts, tm_parts = [], []
    k = neg if isinstance(neg, int) else neg.shape[1]
    rows = max(1, chunk // max(1, k))
    for s in range(0, bank.n_frames, rows):
        frames = torch.arange(s, min(s + rows, bank.n_frames))
        x = bank.x[bank.windows(frames, cx)]
        ax = critic.encode_x(x.to(device))
        nf = bank.other_utterance_frames(gen, frames, k) if isinstance(neg, int) else neg[frames]
        tj, tm = critic.score_negatives(ax, ay[frames.to(device)], ay, nf.to(device))
        tj_parts.append(tj.float().cpu())
        tm_parts.append(tm.float().cpu())
    critic.train(was_training)
    return torch.cat(tj_parts), torch.cat(tm_parts)


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

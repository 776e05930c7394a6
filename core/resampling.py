"""Bootstrap intervals and permutation p-values of a held-out bound, resampled where the dependence lives."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from .data import FrameBank

Bound = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def block_length(n: int) -> int:
    """Block length of the moving-block bootstrap for n correlated frames: n^(1/3), the usual rate."""
    return max(2, round(n ** (1 / 3)))


def block_bootstrap_indices(n: int, block: int, gen: torch.Generator, size: int | None = None) -> torch.Tensor:
    """A moving-block bootstrap sample of n frames: random runs of ``block`` consecutive indices, ``size`` (n) in all."""
    block, size = min(block, n), size or n
    starts = torch.randint(0, n - block + 1, (-(-size // block),), generator=gen)
    return (starts[:, None] + torch.arange(block)).reshape(-1)[:size]


def resamples(bank: FrameBank, b: int, gen: torch.Generator) -> tuple[Iterator[torch.Tensor], str]:
    """``b`` bootstrap resamples of the bank's frame indices, and how they are drawn."""
    n = bank.n_frames
    # Resampling whole utterances keeps their internal correlation in the interval.
    by_utt = bank.n_utts >= 10 and bank.n_utts < n
    # Fewer than 10 utterances are too few to resample, but their frames are still correlated in
    # time: resampling blocks of consecutive frames keeps that correlation in the interval.
    block = block_length(n) if (not by_utt and bank.n_utts < n) else 1
    cap = 200_000

    def draw() -> Iterator[torch.Tensor]:
        for _ in range(b):
            if by_utt:
                yield bank.frames_of(torch.randint(0, bank.n_utts, (bank.n_utts,), generator=gen))
            elif block > 1:
                yield block_bootstrap_indices(n, block, gen, size=min(n, cap))
            else:
                yield torch.randint(0, n, (min(n, cap),), generator=gen)

    method = "utterances" if by_utt else (f"blocks of {block} consecutive frames" if block > 1 else "frames")
    return draw(), method


def bootstrap_interval(bound: Bound, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor, b: int,
                       gen: torch.Generator) -> tuple[float, float, str]:
    """Percentile 95% interval of the bound over ``b`` resamples of the scored test frames."""
    if b < 10:
        v = float(bound(tj, tm))
        return v, v, "none"
    draws, method = resamples(bank, b, gen)
    arr = np.asarray([float(bound(tj[idx], tm[idx])) for idx in draws])
    return float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975)), method


@torch.no_grad()
def permutation_p(bound: Bound, critic: torch.nn.Module, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor,
                  n_perm: int, cx: int, cy: int, device: torch.device, gen: torch.Generator) -> float | None:
    """p-value of 'no dependence': the bound on real pairs against pairs shuffled across utterances."""
    if not n_perm:
        return None
    sub = torch.randperm(bank.n_frames, generator=gen)[:20000]
    sub = torch.sort(sub).values
    obs = float(bound(tj[sub], tm[sub]))
    was = critic.training
    critic.eval()
    x = bank.x[bank.windows(sub, cx)].to(device)
    ax = critic.encode_x(x)
    null_count = 0
    for _ in range(n_perm):
        other = bank.other_utterance_frames(gen, sub, 1)[:, 0]
        ay = critic.encode_y(bank.y[bank.windows(other, cy)].to(device))
        t_null, _ = critic.pair_scores(ax, ay, None)
        if float(bound(t_null.float().cpu(), tm[sub])) >= obs:
            null_count += 1
    critic.train(was)
    return (1 + null_count) / (1 + n_perm)

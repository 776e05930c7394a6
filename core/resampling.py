"""Bootstrap intervals and permutation p-values of a held-out bound, resampled where the dependence lives."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .data import FrameBank
from .serial import correlation_length, stream_correlation_length

Bound = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def block_length(n: int) -> int:
    """Block length of the moving-block bootstrap for n correlated frames: n^(1/3), the usual rate."""
    return max(2, round(n ** (1 / 3)))


def block_bootstrap_indices(n: int, block: int, gen: torch.Generator, size: int | None = None) -> torch.Tensor:
    """A moving-block bootstrap sample of n frames: random runs of ``block`` consecutive indices, ``size`` (n) in all."""
    block, size = min(block, n), size or n
    starts = torch.randint(0, n - block + 1, (-(-size // block),), generator=gen)
    return (starts[:, None] + torch.arange(block)).reshape(-1)[:size]


#: Resampling blocks are this many correlation lengths long, so that frames of two blocks are nearly
#: independent (AR(1): correlation e^-5 at that distance) and a block holds its own dependence.
BLOCK_FACTOR = 5
#: Fewer utterances than this are too few to resample on their own: blocks within them are used where
#: they fit (``resampling_units``).
FEW_UNITS = 10
#: Fewer resampled utterances than this get a t interval instead of bootstrap percentiles. With unit
#: effects drawn from a t5 distribution, 400 draws each, percentiles covered the mean in 86% (11
#: units), 90% (20) and 92% (40) of draws, the t interval in 97%, 95% and 94.5%.
T_INTERVAL_UNITS = 50


@dataclass(frozen=True)
class Units:
    """What the bootstrap and the permutation null resample: single frames, utterances, or blocks of frames."""

    kind: str  # "frames", "utterances" or "blocks"
    block: int  # frames per block (blocks), else 1
    correlation_length: int  # measured on the split, frames

    def describe(self) -> str:
        """How the resamples are drawn, for ci_method."""
        if self.kind == "blocks":
            return f"blocks of {self.block} consecutive frames"
        return self.kind


def resampling_units(bank: FrameBank, correlation_length: int = 1) -> Units:
    """The units that carry the split's dependence: utterances, or blocks several correlation lengths long."""
    n = bank.n_frames
    if bank.n_utts >= n:  # one frame per utterance: a series in the given order
        if correlation_length <= 1:
            return Units("frames", 1, correlation_length)
        return Units("blocks", max(block_length(n), BLOCK_FACTOR * correlation_length), correlation_length)
    # Resampling whole utterances keeps their internal correlation in the interval.
    if bank.n_utts >= FEW_UNITS:
        return Units("utterances", 1, correlation_length)
    # Fewer utterances are too few to resample, but their frames are still correlated in time:
    # blocks of consecutive frames keep that correlation, when blocks long enough fit in them.
    if correlation_length <= 1:
        return Units("blocks", block_length(n), correlation_length)
    block = max(block_length(n), BLOCK_FACTOR * correlation_length)
    lengths = bank.offsets[1:] - bank.offsets[:-1]
    if 2 * block > float(lengths.double().median()):
        return Units("utterances", 1, correlation_length)
    return Units("blocks", block, correlation_length)


def split_units(bank: FrameBank, tj: torch.Tensor) -> Units:
    """The units a split's resamples use, from the correlation length measured on it: of both streams'
    leading components and of a critic's joint scores ``tj``, whichever is longest."""
    offsets = None if bank.n_utts >= bank.n_frames else bank.offsets
    length = max(stream_correlation_length(bank.x, bank.y, offsets), correlation_length(tj, offsets))
    return resampling_units(bank, length)


def unit_offsets(bank: FrameBank, units: Units) -> torch.Tensor:
    """Boundaries ``[U+1]`` of the units in the bank's frame order (blocks: non-overlapping, the last one longer)."""
    n = bank.n_frames
    if units.kind == "utterances":
        return bank.offsets
    if units.kind == "frames":
        return torch.arange(n + 1)
    cuts = torch.arange(0, n - units.block + 1, units.block)
    return torch.cat([cuts, torch.tensor([n])])


def resamples(bank: FrameBank, b: int, gen: torch.Generator,
              units: Units | None = None) -> tuple[Iterator[torch.Tensor], str]:
    """``b`` bootstrap resamples of the bank's frame indices, and how they are drawn."""
    n = bank.n_frames
    units = units or resampling_units(bank)
    by_utt = units.kind == "utterances"
    block = units.block
    cap = 200_000

    def draw() -> Iterator[torch.Tensor]:
        for _ in range(b):
            if by_utt:
                yield bank.frames_of(torch.randint(0, bank.n_utts, (bank.n_utts,), generator=gen))
            elif block > 1:
                yield block_bootstrap_indices(n, block, gen, size=min(n, cap))
            else:
                yield torch.randint(0, n, (min(n, cap),), generator=gen)

    return draw(), units.describe()


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.975, df))


def bootstrap_interval(bound: Bound, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor, b: int,
                       gen: torch.Generator, units: Units | None = None) -> tuple[float, float, str]:
    """95% interval of the bound over ``b`` resamples of the scored test frames, by the given units."""
    if b < 10:
        v = float(bound(tj, tm))
        return v, v, "none"
    units = units or resampling_units(bank)
    draws, method = resamples(bank, b, gen, units)
    arr = np.asarray([float(bound(tj[idx], tm[idx])) for idx in draws])
    n_units = bank.n_utts if units.kind == "utterances" else 0
    if 2 <= n_units < T_INTERVAL_UNITS:
        # Percentiles of a bootstrap over a few dozen units are too narrow (the resamples' spread is
        # biased low by (U-1)/U and its tails are coarse): a t interval on U-1 degrees of freedom.
        centre = float(bound(tj, tm))
        half = t975(n_units - 1) * float(arr.std()) * math.sqrt(n_units / (n_units - 1))
        return centre - half, centre + half, f"{method} ({n_units}; t interval)"
    return float(np.quantile(arr, 0.025)), float(np.quantile(arr, 0.975)), method


def p_value_text(p: float | None, n_perm: int) -> str | None:
    """The p-value as it may be quoted: "< 0.01" at its floor 1/(1 + permutations), else to two figures."""
    if p is None:
        return None
    floor = 1.0 / (1 + n_perm)
    return f"< {floor:.2g}" if p <= floor * (1 + 1e-9) else f"{p:.2g}"


@torch.no_grad()
def permutation_p(bound: Bound, critic: torch.nn.Module, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor,
                  n_perm: int, cx: int, cy: int, device: torch.device, gen: torch.Generator,
                  units: Units | None = None) -> float | None:
    """p-value of 'no dependence': the bound on real pairs against pairs shuffled across utterances."""
    if not n_perm:
        return None
    if units is not None and units.kind != "frames":
        return _unit_permutation_p(bound, critic, bank, tj, tm, n_perm, cx, cy, device, gen, units)
    sub = torch.randperm(bank.n_frames, generator=gen)[:20000]
    sub = torch.sort(sub).values
    obs = float(bound(tj[sub], tm[sub]))
    was = critic.training
    critic.eval()
    x = bank.x[bank.windows(sub, cx)].to(device)
    ax = critic.encode_x(x)
    # Every frame's y encoded once and gathered per shuffle, when the split is small enough to hold them:
    # an expensive encoder (a closed-form mixture over thousands of token tuples) then costs one pass,
    # not one per shuffle (14 s of a 25 s run with four codebooks).
    every = _encode_all_y(critic, bank, cy, device)
    null_count = 0
    for _ in range(n_perm):
        other = bank.other_utterance_frames(gen, sub, 1)[:, 0]
        if every is not None:
            ay = every.index_select(0, other.to(every.device))
        else:
            ay = critic.encode_y(bank.y[bank.windows(other, cy)].to(device))
        t_null, _ = critic.pair_scores(ax, ay, None)
        if float(bound(t_null.float().cpu(), tm[sub])) >= obs:
            null_count += 1
    critic.train(was)
    return (1 + null_count) / (1 + n_perm)


#: the most memory the permutation null spends on holding every test frame's y encoding
ENCODE_ONCE_MAX_BYTES = 256 * 2**20


def _encode_all_y(critic: torch.nn.Module, bank: FrameBank, cy: int, device: torch.device,
                  chunk: int = 8192) -> torch.Tensor | None:
    """The critic's y encoding of every frame of ``bank`` in frame order, or None when it would take more than
    ENCODE_ONCE_MAX_BYTES."""
    parts: list[torch.Tensor] = []
    for s in range(0, bank.n_frames, chunk):
        parts.append(critic.encode_y(bank.y[bank.windows(torch.arange(s, min(s + chunk, bank.n_frames)), cy)]
                                     .to(device)))
        if s == 0 and parts[0][0].numel() * parts[0].element_size() * bank.n_frames > ENCODE_ONCE_MAX_BYTES:
            return None
    return torch.cat(parts)


def _unit_permutation_p(bound: Bound, critic: torch.nn.Module, bank: FrameBank, tj: torch.Tensor, tm: torch.Tensor,
                        n_perm: int, cx: int, cy: int, device: torch.device, gen: torch.Generator,
                        units: Units) -> float:
    """The null re-pairs whole units (x of one utterance or block with y of another, frame by frame in order),
    so each stream keeps its serial structure and only the pairing between them is broken."""
    bounds = unit_offsets(bank, units)
    lengths = bounds[1:] - bounds[:-1]
    # Units in random order up to ~20,000 frames: the null's cost stays flat on large test splits.
    order = torch.randperm(len(lengths), generator=gen)
    keep = max(2, int(torch.searchsorted(torch.cumsum(lengths[order], 0), torch.tensor(20_000), right=True)))
    chosen = torch.sort(order[:keep]).values
    u_len = lengths[chosen]
    first = torch.repeat_interleave(bounds[chosen], u_len)
    local_unit = torch.repeat_interleave(torch.arange(len(chosen)), u_len)
    local_start = torch.cumsum(u_len, 0) - u_len
    pos = torch.arange(int(u_len.sum())) - local_start[local_unit]
    sub = first + pos
    obs = float(bound(tj[sub], tm[sub]))
    was = critic.training
    critic.eval()
    ax = critic.encode_x(bank.x[bank.windows(sub, cx)].to(device))
    ay = critic.encode_y(bank.y[bank.windows(sub, cy)].to(device))
    n_units, null_count = len(chosen), 0
    for _ in range(n_perm):
        # Uniform over all re-pairings, the identity included: under independence the observed pairing is
        # then exchangeable with the drawn ones, so the p-value is valid however few the units (with
        # derangements only, 4 units give 9 distinct null values and p <= 0.05 in 1 draw of 5).
        partner = torch.randperm(n_units, generator=gen)
        p = partner[local_unit]
        # A shorter partner is read cyclically, so that every x frame gets a y frame.
        idx = local_start[p] + pos % u_len[p]
        t_null, _ = critic.pair_scores(ax, ay[idx.to(ay.device)], None)
        if float(bound(t_null.float().cpu(), tm[sub])) >= obs:
            null_count += 1
    critic.train(was)
    return (1 + null_count) / (1 + n_perm)

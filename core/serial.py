"""Serial correlation of frames: how far apart two frames must be to count as independent, from the data."""
from __future__ import annotations

import math

import torch

#: A mean autocorrelation below 1/e counts as decayed: the lag where it gets there is the correlation length.
DECAYED = math.exp(-1.0)
#: Frames scanned at most: enough for a stable autocorrelation, cheap on corpora of millions of frames.
MAX_FRAMES = 200_000


def _lags(max_lag: int) -> list[int]:
    """1, 2, 3, ... then about 15% apart: the correlation length to within a few per cent, in ~50 lags."""
    out, lag = [], 1
    while lag <= max_lag:
        out.append(lag)
        lag = max(lag + 1, int(lag * 1.15))
    return out


def leading_component(t: torch.Tensor) -> torch.Tensor:
    """A scalar series ``[N]`` that carries a stream's serial structure: the leading principal component of
    float frames, or the first codebook's token ids (compared for equality, see ``correlation_length``)."""
    if not t.dtype.is_floating_point:
        return t[:, 0].long()
    z = t.reshape(t.shape[0], -1).double()
    z = z - z.mean(0)
    rows = z[:: max(1, z.shape[0] // 50_000)]
    # The top right-singular vector of a subsample: PCA without the N x N work.
    _, _, v = torch.linalg.svd(rows, full_matrices=False)
    return z @ v[0]


def correlation_length(series: torch.Tensor, offsets: torch.Tensor | None = None, max_lag: int = 5000) -> int:
    """The first lag (frames) at which the mean autocorrelation of ``series`` within utterances falls below 1/e.

    ``offsets`` ``[U+1]`` marks utterance boundaries (pairs never cross one); None: one series. The
    mean is the global one, so per-utterance offsets keep the autocorrelation high and lengthen the
    result, as they should: frames of one utterance are then dependent at any distance. Integer
    series (tokens) use the categorical analogue: P(same token at lag) against P(same token) by chance.
    Returns 1 for exchangeable frames, and the longest utterance when it never decays.
    """
    n = int(series.shape[0])
    if offsets is None:
        offsets = torch.tensor([0, n])
    if n > MAX_FRAMES:  # the leading utterances (or frames) are a sample of the same process
        keep = int(torch.searchsorted(offsets, torch.tensor(MAX_FRAMES), right=True))
        offsets = offsets[: max(2, keep)].clone()
        offsets[-1] = min(int(offsets[-1]), MAX_FRAMES)
        n = int(offsets[-1])
        series = series[:n]
    lengths = offsets[1:] - offsets[:-1]
    utt = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    longest = int(lengths.max()) if len(lengths) else 1
    if longest < 2:
        return 1
    categorical = not series.dtype.is_floating_point
    if categorical:
        counts = torch.bincount(series - series.min()).double()
        chance = float((counts / n).pow(2).sum())
        if chance >= 1.0:
            return 1
    else:
        z = series.double() - series.double().mean()
        var = float(z.pow(2).mean())
        if var <= 0:
            return 1
    for lag in _lags(min(max_lag, longest - 1)):
        same = utt[lag:] == utt[:-lag]
        if not bool(same.any()):
            break
        if categorical:
            hit = (series[lag:] == series[:-lag])[same].double().mean()
            r = (float(hit) - chance) / (1.0 - chance)
        else:
            r = float((z[lag:] * z[:-lag])[same].mean()) / var
        if r < DECAYED:
            return lag
    return longest


def stream_correlation_length(x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor | None = None) -> int:
    """The longer of the two streams' correlation lengths (their leading components, within utterances)."""
    return max(correlation_length(leading_component(x), offsets), correlation_length(leading_component(y), offsets))


#: A single series is cut into blocks of this many correlation lengths, each followed by a dropped gap of
#: GAP_FACTOR lengths: frames of two blocks are then at least 2 lengths apart (AR(1): correlation e^-2).
SERIES_BLOCK_FACTOR = 6
GAP_FACTOR = 2
#: Fewer blocks than this cannot give train, validation and test splits of several blocks each.
MIN_SERIES_BLOCKS = 12


def series_blocks(n: int, length: int, min_blocks: int = MIN_SERIES_BLOCKS) -> tuple[list[slice], int, int]:
    """Contiguous blocks of a serially correlated series of ``n`` frames, with gaps between them; returns the
    blocks, their length and the gap. Raises when the series is too short for ``min_blocks`` of them."""
    from .errors import MinecliError

    block, gap = SERIES_BLOCK_FACTOR * length, GAP_FACTOR * length
    count = (n + gap) // (block + gap)
    if count < min_blocks:
        raise MinecliError(f"x and y: the frames are serially correlated over about {length} frames, too long for "
                           f"{n} frames to be cut into {min_blocks} independent blocks of {block} (gaps of {gap}); "
                           "pass per-utterance lists (x=[utt1, utt2, ...]) so the split is by utterance, more "
                           "frames, or serial='iid' if the rows are exchangeable")
    return [slice(i * (block + gap), i * (block + gap) + block) for i in range(count)], block, gap

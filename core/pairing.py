"""Frame alignment of two streams with different frame rates."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch


@dataclass(frozen=True)
class Alignment:
    """How two streams are put on one frame grid."""

    mode: str  # 'repeat' or 'grid'
    x_repeat: int
    y_repeat: int
    rate: float  # frames per second of the aligned grid

    def describe(self) -> str:
        """One line for the summary."""
        if self.mode == "repeat":
            return f"x repeated x{self.x_repeat}, y x{self.y_repeat}, {self.rate:g} Hz"
        return f"nearest-frame alignment on a {self.rate:g} Hz grid"


def plan_alignment(rate_x: float, rate_y: float, x_repeat: int | str = "auto",
                   y_repeat: int | str = "auto") -> Alignment:
    """Explicit repeat factors, or 'auto': integer repeats when the rates allow, else the faster grid."""
    if x_repeat != "auto" and y_repeat != "auto":
        return Alignment("repeat", int(x_repeat), int(y_repeat), rate_x * int(x_repeat))
    ratio = Fraction(rate_y / rate_x).limit_denominator(1000)
    if abs(float(ratio) - rate_y / rate_x) < 1e-9:
        if ratio.denominator == 1:
            return Alignment("repeat", ratio.numerator, 1, rate_y)
        if ratio.numerator == 1:
            return Alignment("repeat", 1, ratio.denominator, rate_x)
    return Alignment("grid", 1, 1, max(rate_x, rate_y))


def grid_index(n_slow: int, n_fast: int, rate_slow: float, rate_fast: float) -> torch.Tensor:
    """For each fast frame, the slow frame whose interval holds the fast frame's centre."""
    centres = (torch.arange(n_fast, dtype=torch.float64) + 0.5) * (rate_slow / rate_fast)
    idx = torch.floor(centres + 1e-9).long()
    return idx[idx < n_slow]


def align_pair(x: torch.Tensor, y: torch.Tensor, plan: Alignment, rate_x: float, rate_y: float,
               max_length_diff: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Align one utterance's streams; None when their lengths disagree by more than max_length_diff."""
    if plan.mode == "repeat":
        xr = x.repeat_interleave(plan.x_repeat, dim=0) if plan.x_repeat > 1 else x
        yr = y.repeat_interleave(plan.y_repeat, dim=0) if plan.y_repeat > 1 else y
        if abs(xr.shape[0] - yr.shape[0]) > max_length_diff:
            return None
        n = min(xr.shape[0], yr.shape[0])
        return xr[:n], yr[:n]
    x_fast = rate_x >= rate_y
    fast, slow = (x, y) if x_fast else (y, x)
    r_fast, r_slow = (rate_x, rate_y) if x_fast else (rate_y, rate_x)
    expected = slow.shape[0] * r_fast / r_slow
    if abs(expected - fast.shape[0]) > max_length_diff + 1e-9:
        return None
    idx = grid_index(slow.shape[0], fast.shape[0], r_slow, r_fast)
    n = idx.numel()
    fast_a, slow_a = fast[:n], slow[idx]
    return (fast_a, slow_a) if x_fast else (slow_a, fast_a)



def lag_in_frames(lag_frames: int, lag_ms: float | None, rate: float) -> int:
    """The lag in aligned frames: lag_ms rounded on the aligned grid when given, else lag_frames."""
    return int(round(lag_ms * rate / 1000.0)) if lag_ms is not None else int(lag_frames)


def shift_pair(x: torch.Tensor, y: torch.Tensor, lag: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair x[t] with y[t + lag] on aligned frames, trimming the frames that lose their partner."""
    n = min(x.shape[0], y.shape[0])
    if lag >= 0:
        k = min(lag, n)
        return x[: n - k], y[k:n]
    k = min(-lag, n)
    return x[k:n], y[: n - k]

"""Units of an estimate: what one sample is, how many independent samples a second of audio holds,
and the entropy ceilings of a sample's context windows.

An estimate is the MI of one *sample*: an x window of ``cx`` aligned frames and a y window of ``cy``
aligned frames centred on the same aligned frame. Neighbouring samples share frames when a stream
was repeated to reach the aligned rate or when windows are wider than one frame, so multiplying the
per-sample MI by the aligned frame rate would count the same frames several times (a stream repeated
x2 would report twice its rate; a window of 3 frames about three times). minecli counts a sample
once per *stride*: the number of aligned frames after which the next sample shares no source frame
with it on either side. Bits per second are bits per sample times samples per second at that stride.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LN2 = math.log(2.0)

PER_SECOND_DEFINITION = (
    "MI per sample times non-overlapping samples per second: a sample is counted once per stride, the "
    "number of aligned frames after which the next sample shares no source frame with it on either side "
    "(repeated frames and overlapping context windows are not counted twice). It assumes that "
    "non-overlapping samples carry separate information, so for slowly varying streams it can still "
    "exceed the information rate of the whole sequence.")


def distinct_frames(window: int, repeat: float) -> int:
    """Most source frames a window of `window` aligned frames can touch when each is repeated `repeat` times."""
    if repeat <= 1.0 + 1e-9:
        return int(window)
    return int(min(window, math.ceil((window - 1) / repeat - 1e-9) + 1))


@dataclass(frozen=True)
class SampleUnits:
    """What one estimated sample is, in frames and in seconds of audio."""

    aligned_rate_hz: float
    source_rate_hz: tuple[float, float]
    repeat: tuple[float, float]
    context: tuple[int, int]
    distinct: tuple[int, int]
    stride_frames: float

    @property
    def samples_per_second(self) -> float:
        """Non-overlapping samples per second of audio."""
        return self.aligned_rate_hz / self.stride_frames

    def sample_name(self) -> str:
        """'frame' when a sample is one aligned frame per side, else 'window' (named in the summary)."""
        return "frame" if self.context == (1, 1) else "window"

    def describe(self) -> str:
        """One line saying what a sample is."""
        cx, cy = self.context
        if (cx, cy) == (1, 1):
            what = f"one aligned frame of x and y at {self.aligned_rate_hz:g} Hz"
        else:
            what = (f"an x window of {cx} and a y window of {cy} aligned frames at {self.aligned_rate_hz:g} Hz, "
                    "centred on one frame")
        return what

    def to_dict(self, mi_nats: float) -> dict[str, Any]:
        """The results.json block: per sample, per second and the definitions behind them."""
        return {
            "sample": self.describe(),
            "mi_nats_per_sample": mi_nats,
            "mi_bits_per_sample": mi_nats / LN2,
            "context_frames": {"x": self.context[0], "y": self.context[1]},
            "source_frame_rate_hz": {"x": self.source_rate_hz[0], "y": self.source_rate_hz[1]},
            "repeat": {"x": self.repeat[0], "y": self.repeat[1]},
            "source_frames_per_sample": {"x": self.distinct[0], "y": self.distinct[1]},
            "aligned_frame_rate_hz": self.aligned_rate_hz,
            "stride_frames": self.stride_frames,
            "samples_per_second": self.samples_per_second,
            "mi_bits_per_second": mi_nats / LN2 * self.samples_per_second,
            "per_second_definition": PER_SECOND_DEFINITION,
        }


def sample_units(aligned_rate: float, rate_x: float, rate_y: float, context_x: int, context_y: int,
                 repeats: tuple[float, float] | None = None) -> SampleUnits:
    """The units of samples on an aligned grid built from streams at rate_x and rate_y.

    `repeats` are the aligned frames per source frame of each side; by default the ratio of rates
    (what automatic alignment does; explicit repeat factors are passed as given).
    """
    rx, ry = repeats if repeats is not None else (aligned_rate / rate_x, aligned_rate / rate_y)
    rx, ry = max(1.0, float(rx)), max(1.0, float(ry))
    dx, dy = distinct_frames(context_x, rx), distinct_frames(context_y, ry)
    # A side's window moves onto entirely new source frames after (distinct source frames) x (repeat)
    # aligned frames; a sample is new only when both sides are.
    stride = max(dx * rx, dy * ry, 1.0)
    return SampleUnits(float(aligned_rate), (float(rate_x), float(rate_y)), (rx, ry), (int(context_x), int(context_y)),
                       (dx, dy), float(stride))


def window_ceilings(entropy: dict[str, Any], units: SampleUnits) -> dict[str, Any]:
    """Add each index side's ceiling for a whole window: distinct frames x H(frame) (subadditivity)."""
    out = {}
    for side, ent in entropy.items():
        k = units.distinct[0 if side == "x" else 1]
        ent = dict(ent)
        ent["source_frames_per_sample"] = k
        ent["ceiling_nats"] = k * ent["plugin_entropy_nats"]
        if ent.get("log_vocab_nats") is not None:
            ent["log_vocab_ceiling_nats"] = k * ent["log_vocab_nats"]
        out[side] = ent
    return out


def plan_units(plan: Any, rate_x: float, rate_y: float, context_x: int, context_y: int) -> SampleUnits:
    """SampleUnits of a pairing plan (core.pairing.Alignment): its repeat factors, or rate ratios on a grid."""
    repeats = (plan.x_repeat, plan.y_repeat) if plan.mode == "repeat" else None
    return sample_units(plan.rate, rate_x, rate_y, context_x, context_y, repeats)

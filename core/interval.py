"""The reported interval: test noise, widened by what the estimator's own bias and variability measure."""
from __future__ import annotations

import math
from typing import Any


def honest_interval(value: float, test_ci: tuple[float, float], in_sample: float | None, others: list[float],
                    n_in_sample: int) -> tuple[tuple[float, float], dict[str, Any]]:
    """The 95% interval that also spans the estimator's bias: the hull of the test-noise interval with the
    in-sample bound and the other critics' held-out bounds (upper side), each with the same test noise.

    A held-out bound of a trained critic sits below the truth by however much the critic misses; the
    same critic scored on its own training frames sits above it by however much it overfits, so the
    truth lies between the two when the critic is data-limited. Another critic that scores higher on the
    same test frames, or a classical estimate (``include_estimate``), measures what this one misses.
    """
    lo, hi = test_ci
    up = max(hi - value, 0.0)
    his, los = [hi], [lo]
    terms: dict[str, Any] = {"test_noise": [lo, hi]}
    if in_sample is not None and math.isfinite(in_sample):
        # As an estimate of the truth it varies with the critic fitted, not only with the frames it is
        # scored on: the full test noise, not that noise scaled to its n_in_sample frames (which left
        # student-t d=4 short by 0.01-0.03 nats in 2 of 2 seeds of benchmarks/calibration.py).
        his.append(in_sample + up)
        terms["in_sample_nats"] = in_sample
        terms["in_sample_frames"] = n_in_sample
    finite = [o for o in others if o is not None and math.isfinite(o)]
    # Other critics' held-out bounds are lower bounds too: one above the estimate says the truth may be
    # higher, one below says nothing about it (it only missed more), so they only raise the upper end.
    his += [o + up for o in finite]
    if finite:
        terms["other_estimates_nats"] = finite
    return (min(los), max(his)), terms


def include_estimate(final: dict[str, Any], estimate: float | None, label: str) -> None:
    """Widen ``final['ci95_nats']`` to hold another estimate on the same test frames, with the same test noise.

    For an estimate that is not a bound (a classical one), on both sides: it may be biased either way."""
    if estimate is None or not math.isfinite(estimate):
        return
    value, (lo, hi) = final["mi_nats"], final["ci95_test_noise_nats"]
    up, down = max(hi - value, 0.0), max(value - lo, 0.0)
    c_lo, c_hi = final["ci95_nats"]
    final["ci95_nats"] = (min(c_lo, estimate - down), max(c_hi, estimate + up))
    final.setdefault("ci_terms", {})[label] = estimate

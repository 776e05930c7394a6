"""The outcome of one estimate, and the warnings and entropy ceilings reported beside it."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .data import FrameBank
from .interfaces import Estimator
from .spec import StreamSpec

LOG2 = math.log(2.0)


@dataclass
class MIResult:
    """The outcome of one estimate: the number, its interval, and how it was obtained."""

    mi_nats: float
    ci95_nats: tuple[float, float]
    estimator: str
    lower_bound: bool
    n_test_frames: int
    n_test_utts: int
    ci_method: str
    p_value: float | None
    best_step: int
    steps_run: int
    stopped_early: bool
    seconds: float
    stop_reason: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    entropy: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    pairs_per_second: float = 0.0
    #: the arithmetic of the training steps, 'float32' or 'bf16' (the estimate is scored in float32 either way)
    precision: str = "float32"
    critic: str = ""
    reference: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)
    p_value_text: str | None = None
    n_permutations: int = 0
    permutation_unit: str | None = None
    correlation_length_frames: int = 1
    ci95_test_noise_nats: tuple[float, float] | None = None
    ci_terms: dict[str, Any] = field(default_factory=dict)
    #: the held-out bound of the critic that scored the test split, when ``mi_nats`` is that bound extrapolated to
    #: unlimited training data (the half-sample or posterior correction of a closed-form critic); None when
    #: ``mi_nats`` is the bound
    held_out_bound_nats: float | None = None
    #: the correction's terms: each half's held-out bound and share of the train frames, the bound's own interval
    half_sample: dict[str, Any] | None = None

    @property
    def mi_bits(self) -> float:
        """The estimate in bits."""
        return self.mi_nats / LOG2

    @property
    def ci95_bits(self) -> tuple[float, float]:
        """The 95% interval in bits."""
        return (self.ci95_nats[0] / LOG2, self.ci95_nats[1] / LOG2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["mi_bits"] = self.mi_bits
        d["ci95_bits"] = list(self.ci95_bits)
        d["ci95_nats"] = list(self.ci95_nats)
        if self.ci95_test_noise_nats is not None:
            d["ci95_test_noise_nats"] = list(self.ci95_test_noise_nats)
        return d

    def __str__(self) -> str:
        lo, hi = self.ci95_nats
        p = (f", p {self.p_value_text} ({self.n_permutations} permutations of {self.permutation_unit})"
             if self.p_value_text is not None else "")
        held = (f" (held-out bound {self.held_out_bound_nats:.4f}, before the correction for the train split's size)"
                if self.held_out_bound_nats is not None else "")
        return (f"I(X;Y) = {self.mi_nats:.4f} nats ({self.mi_bits:.4f} bits){held}, 95% CI [{lo:.4f}, {hi:.4f}] nats, "
                f"{self.estimator}, {self.n_test_frames} test frames{p}")


def entropy_report(spec_x: StreamSpec, spec_y: StreamSpec, bank: FrameBank) -> dict[str, Any]:
    """Plug-in entropies of index streams on a split and log(vocab), the ceilings of I(X;Y)."""
    from .baselines import plugin_entropy

    out: dict[str, Any] = {}
    for side, spec, t in (("x", spec_x, bank.x), ("y", spec_y, bank.y)):
        if spec.kind == "index":
            out[side] = {"plugin_entropy_nats": float(plugin_entropy(t.numpy())),
                         "log_vocab_nats": spec.log_vocab_nats}
    return out


def result_warnings(mi: float, ci: tuple[float, float], entropy: dict[str, Any], n_marginal: int,
                    estimator: Estimator, n_negatives: int) -> list[str]:
    """Warnings a researcher should see before quoting the number."""
    out = []
    # A context window's ceiling is its distinct frames times H(frame), when the caller gave it:
    # comparing a window's MI with one frame's entropy would warn of a ceiling that is not there.
    ents = [v.get("ceiling_nats", v["plugin_entropy_nats"]) for v in entropy.values()]
    windows = any(v.get("source_frames_per_sample", 1) > 1 for v in entropy.values())
    if ents and mi >= 0.9 * min(ents):
        what = ("min(H(X window), H(Y window)) <= distinct frames x plug-in H(frame)" if windows
                else "min(H(X), H(Y))")
        out.append(f"the estimate {mi:.3f} nats is near {what} = {min(ents):.3f} nats (plug-in entropy of "
                   "the test split): the true MI may be higher than a bound this close to the ceiling can show")
    if n_marginal > 1 and mi >= 0.8 * math.log(n_marginal):
        out.append(f"the estimate is near log(marginal samples) = {math.log(n_marginal):.2f} nats, about what a "
                   "DV-type bound can certify from this many samples; use more test data")
    ceiling = estimator.ceiling_nats(n_negatives)
    if ceiling is not None and mi >= 0.9 * ceiling:
        out.append(f"{estimator.name} is capped at {ceiling:.3f} nats with {n_negatives} negatives and the estimate "
                   "is near that cap; raise estimator.eval_negatives or use mine")
    if ci[0] <= 0.0 <= ci[1]:
        out.append("the 95% interval includes 0: no dependence is detected at this sample size")
    return out

"""Selection between the trained critic and the pairing's closed-form reference, on the validation protocol."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data import FrameBank
from .reference import ReferenceCritic, fit_references, reference_kind
from .resampling import FEW_UNITS, Bound, resamples, split_units
from .spec import StreamSpec

Scores = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ReferenceFit:
    """The best closed-form candidate and its scores on the validation protocol."""

    critic: ReferenceCritic
    valid_nats: float
    kind: str
    tj: torch.Tensor
    tm: torch.Tensor


class ReferenceSelection:
    """Fits the reference once, then decides (one-standard-error rule) which critic gives the estimate."""

    def __init__(self, spec_x: StreamSpec, spec_y: StreamSpec, cx: int, cy: int, enabled: bool, train: FrameBank,
                 protocol: tuple[FrameBank, torch.Tensor], score: Callable[[torch.nn.Module], Scores], bound: Bound,
                 device: torch.device, seed: int) -> None:
        self.spec_x, self.spec_y, self.cx, self.cy = spec_x, spec_y, cx, cy
        self.enabled, self.train, self.protocol = enabled, train, protocol
        self.score, self.bound, self.device, self.seed = score, bound, device, seed
        self.fit: ReferenceFit | None = None
        self.tried = False
        self.report: dict[str, Any] | None = None

    def candidate(self) -> ReferenceFit | None:
        """The best validated closed-form critic of this pairing (fitted once), or None when none applies."""
        if not self.tried:
            self.tried = True
            kind = reference_kind(self.spec_x, self.spec_y, self.cx, self.cy) if self.enabled else None
            if kind is not None:
                gen = torch.Generator().manual_seed(self.seed + 5)
                for cand in fit_references(kind, self.train, self.cx, self.cy, self.spec_x, self.spec_y, gen):
                    cand = cand.to(self.device)
                    tj, tm = self.score(cand)
                    value = float(self.bound(tj, tm))
                    if math.isfinite(value) and (self.fit is None or value > self.fit.valid_nats):
                        self.fit = ReferenceFit(cand, value, kind, tj, tm)
        return self.fit

    @property
    def selected(self) -> ReferenceCritic | None:
        """The closed-form critic when it was selected to give the estimate, else None."""
        fit, rep = self.fit, self.report
        return fit.critic if fit is not None and rep is not None and rep["selected"] else None

    def consider(self, model: torch.nn.Module, best_value: float, history: list[dict[str, float]]) -> None:
        """Select the closed-form critic unless the trained one validates higher by more than one SE."""
        self.report = None
        fit = self.candidate()
        if fit is None:
            return
        margin = self.validation_se(fit, self.score(model))
        # One-standard-error rule: the trained critic's best validation is a maximum over many
        # checkpoints, so it reads high; the reference (a handful of parameters) is kept unless the
        # trained critic beats it by more than the standard error of their difference.
        # The same rule against the untrained critic (T ~ 0, the simplest of all): a reference that
        # beats it by less than that error is fitting noise, as on independent streams.
        untrained = history[0]["valid_mi"] if history else 0.0
        selected = fit.valid_nats >= best_value - margin and fit.valid_nats > untrained + margin
        self.report = {"kind": fit.kind, "critic": fit.critic.describe(), "valid_nats": fit.valid_nats,
                       "trained_valid_nats": best_value, "difference_se_nats": margin, "selected": selected}

    def validation_se(self, fit: ReferenceFit, trained: Scores, b: int = 200) -> float:
        """Bootstrap standard error of (trained - reference) bound on the validation protocol, paired by frame and
        resampled by the units that carry the split's dependence (as the test interval is)."""
        bank = self.protocol[0]
        tj_a, tm_a = trained
        units = split_units(bank, tj_a)
        draws, _ = resamples(bank, b, torch.Generator().manual_seed(self.seed + 6), units)
        diffs = [float(self.bound(tj_a[i], tm_a[i]) - self.bound(fit.tj[i], fit.tm[i])) for i in draws]
        if len(diffs) < 2:
            return 0.0
        se = float(np.std(diffs))
        m = bank.n_utts if units.kind == "utterances" else 0
        # the spread of a bootstrap over m units is biased low by (m-1)/m in variance (as in bootstrap_interval)
        return se * math.sqrt(m / (m - 1)) if 2 <= m < FEW_UNITS else se

    def cannot_overtake(self, step: int, best_value: float, history: list[dict[str, float]], patience: int | None,
                        validate_every: int, min_steps: int, total_steps: int) -> bool:
        """True when the reference validates higher and the trained critic, improving at its pace over the last
        ``patience`` validations, would still be below it at the last step."""
        fit = self.fit
        if fit is None or patience is None or step < min_steps or fit.valid_nats <= best_value:
            return False
        span = patience * validate_every
        earlier = [h["valid_mi"] for h in history if h["step"] <= step - span]
        if not earlier:
            return False
        pace = (best_value - max(earlier)) / span
        return best_value + pace * (total_steps - step) < fit.valid_nats

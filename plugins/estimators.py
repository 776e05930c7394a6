"""Built-in estimators: mine, dv, nwj, infonce, smile."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minecli import Estimator, hookimpl, param


@dataclass(frozen=True)
class MineParams:
    ema_decay: float = param(0.99, help="decay of the moving average of E_Q[e^T] used in the gradient")

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), not {self.ema_decay}")


class MINE(Estimator):
    """MINE (Belghazi et al. 2018): the Donsker-Varadhan bound trained with a bias-corrected gradient."""

    name = "mine"
    marginal_log_mean_exp = True  # the bound is E_P[T] minus a function of log E_Q[e^T]
    summary = "MINE: Donsker-Varadhan bound with the moving-average gradient correction"
    Params = MineParams

    def loss(self, t_joint: Any, t_marg: Any) -> tuple[Any, Any]:
        from minecli.core import bounds

        loss, value, self.state["log_ema"] = bounds.mine_loss(
            t_joint, t_marg, self.state.get("log_ema"), self.params.ema_decay)
        return loss, value

    def bound(self, t_joint: Any, t_marg: Any) -> Any:
        from minecli.core import bounds

        return bounds.dv_bound(t_joint, t_marg)


class DV(Estimator):
    """The plain Donsker-Varadhan bound, trained on its own (biased) gradient."""

    name = "dv"
    marginal_log_mean_exp = True  # the bound is E_P[T] minus a function of log E_Q[e^T]
    summary = "Donsker-Varadhan bound E_P[T] - log E_Q[e^T], plain gradient"

    def loss(self, t_joint: Any, t_marg: Any) -> tuple[Any, Any]:
        from minecli.core import bounds

        value = bounds.dv_bound(t_joint, t_marg)
        return -value, value.detach()

    def bound(self, t_joint: Any, t_marg: Any) -> Any:
        from minecli.core import bounds

        return bounds.dv_bound(t_joint, t_marg)


class NWJ(Estimator):
    """Nguyen-Wainwright-Jordan bound: unbiased gradient, higher variance than DV."""

    name = "nwj"
    marginal_log_mean_exp = True  # the bound is E_P[T] minus a function of log E_Q[e^T]
    summary = "NWJ (f-divergence) bound E_P[T] - E_Q[e^(T-1)]"

    def loss(self, t_joint: Any, t_marg: Any) -> tuple[Any, Any]:
        from minecli.core import bounds

        value = bounds.nwj_bound(t_joint, t_marg)
        return -value, value.detach()

    def bound(self, t_joint: Any, t_marg: Any) -> Any:
        from minecli.core import bounds

        return bounds.nwj_bound(t_joint, t_marg)


class InfoNCE(Estimator):
    """InfoNCE (van den Oord et al. 2018): low variance, but never above log(K + 1)."""

    name = "infonce"
    summary = "InfoNCE contrastive bound, capped at log(negatives + 1)"

    def ceiling_nats(self, n_negatives: int) -> float | None:
        return math.log(n_negatives + 1)

    def loss(self, t_joint: Any, t_marg: Any) -> tuple[Any, Any]:
        from minecli.core import bounds

        value = bounds.infonce_bound(t_joint, t_marg)
        return -value, value.detach()

    def bound(self, t_joint: Any, t_marg: Any) -> Any:
        from minecli.core import bounds

        return bounds.infonce_bound(t_joint, t_marg)


@dataclass(frozen=True)
class SmileParams:
    tau: float = param(5.0, help="clip the partition-term scores to [-tau, tau]")

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise ValueError(f"tau must be positive, not {self.tau}")


class SMILE(Estimator):
    """SMILE (Song and Ermon 2020): trained on the JS objective, reported as a clipped DV value."""

    name = "smile"
    summary = "SMILE: clipped DV value, Jensen-Shannon training signal (not a strict bound)"
    Params = SmileParams
    lower_bound = False

    def loss(self, t_joint: Any, t_marg: Any) -> tuple[Any, Any]:
        from minecli.core import bounds

        js = bounds.js_bound(t_joint, t_marg)
        value = bounds.smile_bound(t_joint, t_marg, self.params.tau)
        return -js, value.detach()

    def bound(self, t_joint: Any, t_marg: Any) -> Any:
        from minecli.core import bounds

        return bounds.smile_bound(t_joint, t_marg, self.params.tau)


class JS(Estimator):
    """Trained on the Jensen-Shannon objective, reported as the Donsker-Varadhan bound.

    The JS objective's optimal critic is the log density ratio, the same as DV's, but its gradient
    has no partition-function term, so training stays stable at high MI where MINE's and DV's
    gradients blow up. The number reported is the plain DV bound of that critic: a lower bound.
    """

    name = "js"
    marginal_log_mean_exp = True  # the bound is E_P[T] minus a function of log E_Q[e^T]
    summary = "Jensen-Shannon training (stable at high MI), reported as the Donsker-Varadhan lower bound"

    def loss(self, t_joint: Any, t_marg: Any) -> tuple[Any, Any]:
        from minecli.core import bounds

        js = bounds.js_bound(t_joint, t_marg)
        return -js, bounds.dv_bound(t_joint, t_marg).detach()

    def bound(self, t_joint: Any, t_marg: Any) -> Any:
        from minecli.core import bounds

        return bounds.dv_bound(t_joint, t_marg)


@hookimpl
def register_estimators(register):
    for cls in (MINE, DV, NWJ, InfoNCE, SMILE, JS):
        register(cls)

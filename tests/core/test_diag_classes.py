"""The class reference with a spread per token and dimension, against ground truth."""
from __future__ import annotations

import math

import numpy as np
import torch

import minecli
from minecli.core.diag_classes import MAX_DIAG_WIDTH, DiagClassReference, fit_diag_classes
from minecli.core.reference import SpreadReference, _fit_lda

FAST = dict(progress=False, null_permutations=0, bootstrap=50, validate_every=50, baseline=False)


class ShapedClasses:
    """Zipf-like tokens, y = mu_k + s_k * e with a spread per token and dimension (log-uniform over ``spread``)."""

    def __init__(self, vocab: int, dim: int, seed: int, spread: tuple[float, float] = (0.3, 1.5),
                 round_: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.mu = rng.standard_normal((vocab, dim)) * 0.6
        shape = (vocab, 1) if round_ else (vocab, dim)
        self.sd = np.broadcast_to(np.exp(rng.uniform(np.log(spread[0]), np.log(spread[1]), shape)), (vocab, dim))
        prior = 1.0 / np.arange(1, vocab + 1) ** 0.8
        self.prior = prior / prior.sum()
        self.rng = rng

    def draw(self, n: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        rng = rng or self.rng
        lab = rng.choice(len(self.prior), size=n, p=self.prior)
        return lab, self.mu[lab] + self.sd[lab] * rng.standard_normal((n, self.mu.shape[1]))

    def log_ratio(self, y: np.ndarray) -> np.ndarray:
        """log p(y | k) - log p(y) ``[N, V]``: the true critic."""
        ll = -0.5 * (((y[:, None, :] - self.mu[None]) / self.sd[None]) ** 2).sum(-1) - np.log(self.sd).sum(1)[None]
        top = ll.max(1, keepdims=True)
        return ll - (top + np.log((np.exp(ll - top) * self.prior).sum(1, keepdims=True)))


def _bound(ref: torch.nn.Module, lab: np.ndarray, y: np.ndarray, prior: np.ndarray) -> float:
    """The DV bound of a reference on frames, its marginal term summed over tokens exactly."""
    with torch.no_grad():
        ey = ref.encode_y(torch.as_tensor(y, dtype=torch.float32))
        joint = ref._t(ref.encode_x(torch.as_tensor(lab)), ey).double()
        tokens = ref.encode_x(torch.arange(len(prior)))
        marginal = torch.logsumexp(ref._t(tokens[None], ey[:, None]).double() + torch.as_tensor(np.log(prior)), 1)
    return float(joint.mean() - (torch.logsumexp(marginal, 0) - math.log(len(y))))


def test_the_critic_is_the_log_ratio_of_its_own_classes():
    task = ShapedClasses(16, 3, 0)
    lab, y = task.draw(2000)
    ref = fit_diag_classes("x", torch.as_tensor(lab), torch.as_tensor(y, dtype=torch.float32), 16)[0]
    # rebuild the fitted classes from the buffers and score the log ratio by hand
    var = -0.5 / ref.quad.double()
    means = ref.lin.double() * var
    z = (torch.as_tensor(y[:50]) - ref.center.double()) / ref.scale.double()
    ll = (-0.5 * ((z[:, None] - means[None]) ** 2 / var[None]).sum(-1) - 0.5 * var.log().sum(1)[None])
    want = ll - torch.logsumexp(ll + ref.log_prior.double(), 1, keepdim=True)
    got = ref._t(ref.encode_x(torch.arange(16))[None], ref.encode_y(torch.as_tensor(y[:50], dtype=torch.float32))[:, None])
    assert torch.allclose(got.double(), want, atol=2e-3), float((got.double() - want).abs().max())


def test_classes_shaped_by_dimension_reach_the_true_critic_where_one_spread_each_falls_short():
    task = ShapedClasses(64, 8, 0)
    lab, y = task.draw(7000)
    test_lab, test_y = task.draw(20_000, np.random.default_rng(7))
    r = task.log_ratio(test_y)
    true = float(r[np.arange(len(test_lab)), test_lab].mean())  # E_Q exp T = 1 exactly for the true ratio
    diag = fit_diag_classes("x", torch.as_tensor(lab), torch.as_tensor(y, dtype=torch.float32), 64)
    best = max(_bound(ref, test_lab, test_y, task.prior) for ref in diag)
    spreads = [ref for ref in _fit_lda("x", torch.as_tensor(lab), torch.as_tensor(y, dtype=torch.float32), 64)
               if isinstance(ref, SpreadReference)]
    spread = max(_bound(ref, test_lab, test_y, task.prior) for ref in spreads)
    # 64 x 8 means and variances from 7,000 frames cost at most params / 2n = 0.07 nats (measured: 0.047
    # below the truth at seeds 0 and 3, and one spread per token 0.9 nats below): the fit is within 0.08
    # of the truth and well above the best of one spread per token
    assert true - 0.08 < best < true + 0.02, (best, true)
    assert best > spread + 0.1, (best, spread)


def test_round_classes_lose_little_with_the_spreads_shaped_by_dimension():
    task = ShapedClasses(64, 8, 1, round_=True)
    lab, y = task.draw(7000)
    test_lab, test_y = task.draw(20_000, np.random.default_rng(8))
    diag = fit_diag_classes("x", torch.as_tensor(lab), torch.as_tensor(y, dtype=torch.float32), 64)
    spreads = [ref for ref in _fit_lda("x", torch.as_tensor(lab), torch.as_tensor(y, dtype=torch.float32), 64)
               if isinstance(ref, SpreadReference)]
    best_diag = max(_bound(ref, test_lab, test_y, task.prior) for ref in diag)
    best_spread = max(_bound(ref, test_lab, test_y, task.prior) for ref in spreads)
    # where every token's spread is the same in every dimension the 8 pseudo-frames' candidate stays close
    # to the class spreads (the extra variances cost 0.02-0.03 nats at seeds 1 and 4), so validation
    # chooses by a hair
    assert best_spread - 0.06 < best_diag <= best_spread + 0.01, (best_diag, best_spread)


def test_estimate_mi_chooses_the_shaped_classes_and_gets_the_truth():
    task = ShapedClasses(32, 6, 2)
    lab, y = task.draw(8000)
    test_y = task.draw(100_000, np.random.default_rng(9))
    r = task.log_ratio(test_y[1])
    truth = float(r[np.arange(len(test_y[0])), test_y[0]].mean())  # Monte Carlo: +- 0.005
    res = minecli.estimate_mi(lab, y.astype(np.float32), seed=0, steps=400, **FAST)
    assert "diagonal class reference" in res.critic
    # the test split's 1,600 frames carry ~0.04 nats of noise (its interval) and the fit's shortfall,
    # corrected, a little more: 0.1 nats is 5% of the truth (~2 nats)
    assert abs(res.mi_nats - truth) < 0.1, (res.mi_nats, truth)


def test_there_is_no_fit_beyond_its_width_or_without_a_token_seen_twice():
    wide = torch.randn(500, MAX_DIAG_WIDTH + 1)
    assert fit_diag_classes("x", torch.randint(0, 4, (500,)), wide, 4) == []
    assert fit_diag_classes("x", torch.arange(10), torch.randn(10, 3), 10) == []
    assert all(isinstance(r, DiagClassReference)
               for r in fit_diag_classes("y", torch.randint(0, 4, (200,)), torch.randn(200, 3), 4))

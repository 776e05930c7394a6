"""The critic's structured terms: the quadratic term's algebra and what it buys on Gaussian data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import minecli
from minecli.core.errors import ConfigError
from minecli.core.nets import Critic, ProjectionHead
from minecli.core.params import parse_params
from minecli.core.trainer import CriticConfig


def _gaussian_log_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """log p(x, y) / p(x) p(y) for unit-variance scalars with correlation rho."""
    return (-0.5 * math.log(1 - rho**2)
            - (rho**2 * (x**2 + y**2) - 2 * rho * x * y) / (2 * (1 - rho**2)))


def test_a_rank_two_quadratic_term_is_the_exact_gaussian_critic():
    rho = 0.7
    critic = Critic(ProjectionHead(1, 1, None, []), ProjectionHead(1, 1, None, []), hidden_dims=[],
                    quadratic_dim=2)
    # Write the Gaussian log ratio's quadratic form as sum_k s_k (v_k . [x, y])^2 and load it.
    a = -1.0 / (2 * (1 - rho**2)) * torch.tensor([[rho**2, -rho], [-rho, rho**2]], dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(a)
    with torch.no_grad():
        critic.quad_x.weight.copy_(evecs[0, :, None].float())
        critic.quad_x.bias.zero_()
        critic.quad_y.weight.copy_(evecs[1, :, None].float())
        critic.quad_scale.copy_(evals.float())
        critic.first_x.weight.zero_()
        critic.first_y.weight.zero_()
        critic.first_x.bias.fill_(-0.5 * math.log(1 - rho**2))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 1, generator=g), torch.randn(64, 1, 1, generator=g)
    neg = torch.randint(0, 64, (64, 3), generator=g)
    tj, tm = critic(x, y, neg)
    want_j = _gaussian_log_ratio(x[:, 0, 0], y[:, 0, 0], rho)
    want_m = _gaussian_log_ratio(x[:, 0, 0, None], y[neg][..., 0, 0], rho)
    # float32 arithmetic on O(1) values: agreement to 1e-5 means the algebra, not luck.
    assert torch.allclose(tj, want_j, atol=1e-5)
    assert tm is not None and torch.allclose(tm, want_m, atol=1e-5)


def test_structured_terms_start_at_zero_and_match_between_joint_and_marginal_paths():
    torch.manual_seed(0)
    critic = Critic(ProjectionHead(3, 1, None, []), ProjectionHead(2, 1, None, []), hidden_dims=[16],
                    bilinear_dim=4, quadratic_dim=5)
    x, y = torch.randn(10, 1, 3), torch.randn(10, 1, 2)
    with torch.no_grad():
        assert float(critic(x, y)[0].abs().max()) < 0.1  # near-zero start: every bound starts at ~0
    with torch.no_grad():
        critic.quad_scale.normal_()
    tj, _ = critic(x, y)
    # Scoring x_i against its own y as a "marginal" must give the joint score: one formula, two paths.
    _, tm = critic(x, y, torch.arange(10)[:, None])
    assert tm is not None and torch.allclose(tj, tm[:, 0], atol=1e-6)


def test_quadratic_term_recovers_a_25_dimensional_gaussian_where_the_mlp_alone_falls_short():
    rng = np.random.default_rng(1)
    d, truth, n = 25, 1.0, 10_000
    rho = math.sqrt(1 - math.exp(-2 * truth / d))
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))).astype(np.float32)
    fast = dict(progress=False, null_permutations=0, bootstrap=100, steps=1500, seed=0, baseline=False)
    # reference off: this compares trained critics, and the Gaussian reference would win for both.
    quad = minecli.estimate_mi(x, y, critic={"quadratic_dim": 64, "mlp_lr_scale": 0.1, "reference": False}, **fast)
    mlp = minecli.estimate_mi(x, y, critic={"quadratic_dim": 0, "mlp_lr_scale": 1.0, "reference": False}, **fast)
    # 2,000 test samples: SE ~0.035 nats. The MLP alone lands ~0.25 low at this size (25 weak
    # correlations, 7,000 training samples); the quadratic term reaches within ~0.1 (about 3 SE).
    assert abs(quad.mi_nats - truth) < 0.12, quad
    assert quad.mi_nats > mlp.mi_nats + 0.08, (quad.mi_nats, mlp.mi_nats)


@pytest.mark.parametrize("bad", [{"quadratic_dim": -1}, {"mlp_lr_scale": 0}])
def test_bad_structured_options_are_named(bad):
    with pytest.raises(ConfigError) as err:
        parse_params(CriticConfig, bad, "critic")
    assert next(iter(bad)) in str(err.value)


def test_cross_fitting_scores_every_sample_once_and_combines_the_folds():
    rng = np.random.default_rng(2)
    n, rho = 3000, 0.8
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, 2))).astype(np.float32)
    truth = -math.log(1 - rho**2)  # 1.022 nats
    r = minecli.estimate_mi(x, y, folds=3, steps=300, validate_every=50, progress=False, null_permutations=19,
                            bootstrap=100, baseline=False, seed=0)
    assert len(r.folds) == 3 and r.n_test_frames == n == sum(f["n_test_frames"] for f in r.folds)
    # The estimate is the frame-weighted mean of the folds' held-out bounds.
    assert r.mi_nats == pytest.approx(sum(f["mi_nats"] * f["n_test_frames"] for f in r.folds) / n)
    # Independent folds: the combined test noise is smaller than any single fold's.
    width = r.ci95_test_noise_nats[1] - r.ci95_test_noise_nats[0]
    assert all(width < f["ci95_test_noise_nats"][1] - f["ci95_test_noise_nats"][0] for f in r.folds)
    assert r.ci95_nats[0] <= r.ci95_test_noise_nats[0] and r.ci95_nats[1] >= r.ci95_test_noise_nats[1]
    # 3,000 test scores: SE ~0.03 nats; 0.12 allows 3 SE plus a short training's shortfall.
    assert abs(r.mi_nats - truth) < 0.12, r
    assert r.p_value is not None and r.p_value < 0.01  # three folds at p = 0.05 each combine to ~0.004


def test_cross_fitting_by_utterance_and_bad_fold_counts():
    rng = np.random.default_rng(3)
    xs = [rng.integers(0, 8, 200) for _ in range(8)]
    ys = [(a + rng.integers(0, 2, 200)) % 8 for a in xs]
    r = minecli.estimate_mi(xs, ys, folds=4, steps=150, validate_every=50, progress=False, null_permutations=0,
                            bootstrap=50, seed=0)
    assert r.n_test_utts == 8 and r.n_test_frames == 1600
    # y = x + Bernoulli(1/2) mod 8: I = log 8 - log 2 = 1.386 nats; short training stays below it.
    assert 0.8 < r.mi_nats < 1.386 + 0.1
    with pytest.raises(minecli.MinecliError, match="folds"):
        minecli.estimate_mi(xs, ys, folds=0)
    with pytest.raises(minecli.MinecliError, match="at least 10 utterances"):
        minecli.estimate_mi(xs, ys, folds=5)


@pytest.mark.parametrize("kinds,critic,want", [
    (("float", "float"), {}, 64),                        # auto: float pairs get the quadratic term
    (("float", "float"), {"form": "mlp"}, 0),            # the plain MLP when asked for
    (("float", "float"), {"quadratic_dim": 0}, 0),       # an explicit rank always wins
    (("float", "float"), {"quadratic_dim": 8}, 8),
    (("float", "float"), {"bilinear_dim": 4}, 0),        # a structured term set by hand: nothing added
    (("index", "float"), {}, 0),                         # token windows vs float: the MLP alone
])
def test_auto_adds_a_quadratic_term_only_for_float_pairs(kinds, critic, want):
    from minecli.core.spec import StreamSpec
    from minecli.core.trainer import HeadConfig, build_critic

    specs = [StreamSpec(kind="float", dim=3, frame_rate=1.0) if k == "float" else
             StreamSpec(kind="index", vocab_size=16, frame_rate=1.0) for k in kinds]
    model = build_critic(specs[0], specs[1], 2, 2, HeadConfig(), HeadConfig(), CriticConfig(hidden_dims=[8], **critic))
    assert isinstance(model, Critic) and model.quadratic_dim == want

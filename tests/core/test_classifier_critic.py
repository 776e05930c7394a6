"""The classifier critic for streams of single tokens: its algebra, when it is chosen, what it buys."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import minecli
from minecli.core.errors import ConfigError
from minecli.core.nets import ClassifierCritic, Critic, EmbeddingHead, ProjectionHead
from minecli.core.spec import StreamSpec
from minecli.core.trainer import CriticConfig, HeadConfig, build_critic


def _table(vx: int, vy: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(vx, vy, generator=g, dtype=torch.float64) + 0.05
    return p / p.sum()


@pytest.mark.parametrize("label_side", ["x", "y"])
def test_exact_weights_give_the_tables_log_ratio_on_joint_and_marginal_pairs(label_side):
    p = _table(3, 4)
    pmi = (p.log() - p.sum(1, keepdim=True).log() - p.sum(0, keepdim=True).log()).float()  # [3, 4]
    # The input side is the other stream: one-hot embeddings feed a linear layer whose logits are
    # log p(label | input) - log p(label), and the prior is p(label).
    if label_side == "y":
        vin, vlab, ratio, prior = 3, 4, pmi, p.sum(0)
    else:
        vin, vlab, ratio, prior = 4, 3, pmi.T, p.sum(1)
    critic = ClassifierCritic(EmbeddingHead(vin, 1, 1, vin), vlab, label_side, hidden_dims=[])
    with torch.no_grad():
        critic.head.table.weight.copy_(torch.eye(vin))
        critic.mlp[0].weight.copy_(ratio.T)
        critic.mlp[0].bias.zero_()
        critic.log_prior.copy_(prior.log().float())
    xs, ys = torch.arange(3).repeat_interleave(4), torch.arange(4).repeat(3)  # every cell once
    neg = torch.randint(0, 12, (12, 5), generator=torch.Generator().manual_seed(1))
    tj, tm = critic(xs[:, None, None], ys[:, None, None], neg)
    # float32 on O(1) values: 1e-5 is exact arithmetic, not a fit.
    assert torch.allclose(tj, pmi[xs, ys], atol=1e-5)
    assert tm is not None and torch.allclose(tm, pmi[xs[:, None], ys[neg]], atol=1e-5)


def test_the_partition_term_is_one_whatever_the_weights():
    torch.manual_seed(0)
    critic = ClassifierCritic(ProjectionHead(3, 1, 8, []), 6, "x", hidden_dims=[16])
    with torch.no_grad():
        for prm in critic.parameters():
            prm.normal_()  # far from the near-zero start, so the identity is not an accident of it
    y = torch.randn(20, 1, 3)
    scores = critic.encode_y(y)  # [20, 6]: T(v, y_j) for every token v
    pi = torch.softmax(critic.log_prior, 0)
    # sum_v pi_v e^T(v, y) = 1: the bound's partition term is exactly log 1 when the labels follow pi.
    assert torch.allclose((pi[None, :] * scores.exp()).sum(1), torch.ones(20), atol=1e-5)


def test_marginal_scores_equal_joint_scores_of_the_same_pairs():
    torch.manual_seed(0)
    critic = ClassifierCritic(ProjectionHead(5, 1, None, []), 7, "x", hidden_dims=[16])
    with torch.no_grad():
        critic.mlp[-1].weight.normal_()
    x, y = torch.randint(0, 7, (30, 1, 1)), torch.randn(30, 1, 5)
    neg = torch.randint(0, 30, (30, 4))
    _, tm = critic(x, y, neg)
    # Score x_i against y_neg[i, k] as joint pairs: one formula, two paths.
    tj_pairs, _ = critic(x.repeat_interleave(4, 0), y[neg.reshape(-1)])
    assert tm is not None and torch.allclose(tm.reshape(-1), tj_pairs, atol=1e-6)


def _spec(kind: str, vocab: int | None = None, codebooks: int = 1) -> StreamSpec:
    if kind == "index":
        return StreamSpec(kind="index", dim=codebooks, vocab_size=vocab, n_codebooks=codebooks, frame_rate=1.0)
    return StreamSpec(kind="float", dim=4, frame_rate=1.0)


@pytest.mark.parametrize("sx,sy,cx,cy,critic,want", [
    (("index", 64), ("float",), 1, 1, {}, "x"),
    (("float",), ("index", 64), 1, 1, {}, "y"),
    (("index", 64), ("index", 32), 1, 1, {}, "y"),           # the smaller vocabulary is predicted
    (("index", 32), ("index", 64), 1, 1, {}, "x"),
    (("index", 16), ("index", 16), 1, 1, {}, "y"),           # tie: y, whose scores come from x
    (("index", 64), ("float",), 3, 1, {}, None),              # a window of tokens is not one label
    (("index", 64, 2), ("float",), 1, 1, {}, None),           # two codebooks: a product of labels
    (("index", 257), ("float",), 1, 1, {}, None),             # beyond auto's vocabulary limit (256)
    (("index", 4096), ("float",), 1, 1, {"form": "classifier"}, "x"),
    (("index", 64), ("float",), 1, 1, {"form": "mlp"}, None),
    (("index", 64), ("float",), 1, 1, {"quadratic_dim": 8}, None),
    (("float",), ("float",), 1, 1, {}, None),
])
def test_auto_picks_the_classifier_only_for_single_token_streams(sx, sy, cx, cy, critic, want):
    model = build_critic(_spec(*sx), _spec(*sy), cx, cy, HeadConfig(), HeadConfig(),
                         CriticConfig(hidden_dims=[8], **critic))
    if want is None:
        assert isinstance(model, Critic)
    else:
        assert isinstance(model, ClassifierCritic) and model.label_side == want


@pytest.mark.parametrize("sx,critic,fragment", [
    (("float",), {"form": "classifier"}, "needs a stream of single tokens"),
    (("index", 64), {"form": "classifier", "bilinear_dim": 4}, "no bilinear or quadratic term"),
])
def test_impossible_classifier_requests_are_named(sx, critic, fragment):
    with pytest.raises(ConfigError, match="critic.form") as err:
        build_critic(_spec(*sx), _spec("float"), 1, 1, HeadConfig(), HeadConfig(),
                     CriticConfig(hidden_dims=[8], **critic))
    assert fragment in str(err.value)


def _mixture(vocab: int, dim: int, sigma: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Uniform labels, y = mu[label] + sigma * noise, and I(label; y) by Monte Carlo."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((vocab, dim))
    lab = rng.integers(0, vocab, n)
    y = mu[lab] + sigma * rng.standard_normal((n, dim))
    lm = rng.integers(0, vocab, 100_000)
    ym = mu[lm] + sigma * rng.standard_normal((100_000, dim))
    ll = -((ym[:, None, :] - mu[None]) ** 2).sum(-1) / (2 * sigma**2)
    pmi = ll[np.arange(len(lm)), lm] - (np.logaddexp.reduce(ll, axis=1) - math.log(vocab))
    return lab, y.astype(np.float32), float(pmi.mean())


def test_sixty_four_token_mixture_is_within_five_percent():
    x, y, truth = _mixture(64, 8, 0.8, 10_000, seed=0)
    r = minecli.estimate_mi(x, y, seed=0, progress=False, baseline=False, null_permutations=0,
                            critic={"reference": False})  # the trained classifier, not the LDA reference
    assert r.critic.startswith("classifier")
    # The target is 5% of the truth (3.05 nats). The held-out bound's own noise on 2,000
    # test samples is about 0.03 nats (one standard error), and the plain MLP critic landed 5.7%
    # low on this task; the classifier critic's logits are linear in y here, its exact form.
    assert abs(r.mi_nats - truth) < 0.05 * truth
    assert r.ci95_nats[0] - 0.05 * truth < truth < r.ci95_nats[1] + 0.05 * truth


def test_a_configured_head_on_the_predicted_side_is_reported_unused():
    with pytest.warns(UserWarning, match=r"x\.head is not used.*critic\.form=mlp"):
        build_critic(_spec("index", 16), _spec("float"), 1, 1, HeadConfig(name="embedding", params={"dim": 8}),
                     HeadConfig(), CriticConfig(hidden_dims=[8]))

"""The token shares' posterior: its partition evidence against the sequential predictive, and the unseen mass."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minecli.core.share_posterior import (SharePrior, dirichlet_evidence, draw_shares, fit_share_prior,
                                          partition_evidence, token_share_prior)


def _sequential_log_prob(sequence: list[int], new: callable, old: callable) -> float:
    """log P(partition) as a product of predictive probabilities, token by token, times the number of orders
    of the seen tokens' first appearances; ``new(i, k)`` and ``old(i, n_j)`` are the predictive weights."""
    seen: dict[int, int] = {}
    out = 0.0
    for i, tok in enumerate(sequence):
        if tok in seen:
            out += math.log(old(i, seen[tok]))
            seen[tok] += 1
        else:
            out += math.log(new(i, len(seen)))
            seen[tok] = 1
    return out


@pytest.mark.parametrize("discount,strength", [(0.0, 3.0), (0.4, 2.5), (0.8, 0.3)])
def test_the_pitman_yor_evidence_is_the_chinese_restaurant_probability(discount, strength):
    rng = np.random.default_rng(0)
    sequence = list(rng.integers(0, 12, 40) ** 2 % 17)  # repeats, several distinct tokens
    counts = torch.as_tensor(np.bincount(sequence, minlength=20), dtype=torch.float64)
    # the restaurant: a new table with weight theta + K d, table j with n_j - d, over i + theta
    direct = _sequential_log_prob(sequence, lambda i, k: (strength + k * discount) / (i + strength),
                                  lambda i, n: (n - discount) / (i + strength))
    got = float(partition_evidence(counts, torch.tensor(discount, dtype=torch.float64),
                                   torch.tensor(strength, dtype=torch.float64)))
    assert got == pytest.approx(direct, abs=1e-9)


def test_the_dirichlet_evidence_is_the_polya_urn_probability():
    rng = np.random.default_rng(1)
    vocab, alpha = 20, 0.7
    sequence = list(rng.integers(0, vocab, 50))
    counts = torch.as_tensor(np.bincount(sequence, minlength=vocab), dtype=torch.float64)
    # Polya urn over V labelled tokens; a partition is any labelling of its K blocks by distinct tokens,
    # V! / (V - K)! of them, each as likely: the urn's new-token weight (V - K) alpha counts them all
    direct = _sequential_log_prob(sequence, lambda i, k: (vocab - k) * alpha / (i + vocab * alpha),
                                  lambda i, n: (n + alpha) / (i + vocab * alpha))
    assert dirichlet_evidence(counts, alpha) == pytest.approx(direct, abs=1e-9)


def _zipf_counts(vocab: int, exponent: float, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1) ** exponent
    p /= p.sum()
    return torch.as_tensor(np.bincount(rng.choice(vocab, n, p=p), minlength=vocab), dtype=torch.float64), p


@pytest.mark.parametrize("seed", [0, 1])
def test_zipf_tokens_get_a_pitman_yor_prior_with_the_unseen_mass_they_have(seed):
    counts, p = _zipf_counts(6561, 1.0, 7000, seed)
    prior = fit_share_prior(counts)
    assert not prior.dirichlet
    truth = float(p[counts.numpy() == 0].sum())  # ~0.185
    gen = torch.Generator().manual_seed(seed)
    draws = torch.stack([draw_shares(prior, counts, gen) for _ in range(20)])
    assert torch.allclose(draws.sum(1), torch.ones(20, dtype=torch.float64)) and bool((draws >= 0).all())
    unseen = float(draws[:, counts == 0].sum(1).mean())
    # the symmetric Dirichlet put 0.087 there; the unseen mass's own sampling spread (Good-Turing's n1/N
    # against the truth over seeds) is ~0.01, and a grid step of the fit moves it by ~0.005
    assert abs(unseen - truth) < 0.03, (prior, unseen, truth)
    dirichlet = SharePrior(-token_share_prior(counts), 0.0)
    flat = torch.stack([draw_shares(dirichlet, counts, gen) for _ in range(20)])
    assert float(flat[:, counts == 0].sum(1).mean()) < truth - 0.06


def test_the_token_share_prior_is_flat_for_flat_counts_and_loose_for_skewed_ones():
    rng = np.random.default_rng(3)
    flat = torch.as_tensor(np.bincount(rng.integers(0, 2048, 7000), minlength=2048), dtype=torch.float64)
    zipf = 1.0 / np.arange(1, 2049) ** 1.1
    skewed = torch.as_tensor(np.bincount(rng.choice(2048, 7000, p=zipf / zipf.sum()), minlength=2048),
                             dtype=torch.float64)
    # equally frequent tokens: the evidence wants a prior far firmer than the counts (Poisson noise of ~2
    # about 3.4 a token); Zipf counts spread 1,000-fold: a prior well under Jeffreys' 1/2 a token
    assert token_share_prior(flat) > 20
    assert token_share_prior(skewed) < 0.5


def test_flat_counts_keep_their_dirichlet():
    rng = np.random.default_rng(2)
    counts = torch.as_tensor(np.bincount(rng.integers(0, 2048, 7000), minlength=2048), dtype=torch.float64)
    alpha = token_share_prior(counts)
    assert fit_share_prior(counts) == SharePrior(-alpha, 2048 * alpha)
    # one seen token: nothing to fit
    one = torch.zeros(5, dtype=torch.float64)
    one[2] = 7
    assert fit_share_prior(one).dirichlet

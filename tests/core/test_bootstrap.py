"""The interval when the test split has too few utterances to resample: a moving-block bootstrap."""
from __future__ import annotations

import numpy as np
import torch

import minecli
from minecli.core.trainer import block_bootstrap_indices, block_length


def _ar1(n: int, rho: float, seed: int) -> torch.Tensor:
    """A stationary AR(1) series with unit marginal variance: frames correlated like speech features."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n) * np.sqrt(1 - rho**2)
    x = np.empty(n)
    x[0] = rng.standard_normal()
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    return torch.from_numpy(x)


def test_samples_are_runs_of_consecutive_frames_inside_the_split():
    gen = torch.Generator().manual_seed(0)
    idx = block_bootstrap_indices(100, 7, gen)
    assert idx.shape == (100,) and int(idx.min()) >= 0 and int(idx.max()) < 100
    runs = idx[: 98].reshape(14, 7)
    assert bool((runs[:, 1:] - runs[:, :-1] == 1).all())
    assert block_bootstrap_indices(100, 7, gen, size=30).shape == (30,)


def test_block_resampling_sees_the_variance_that_frame_resampling_misses():
    # For AR(1) with correlation rho, Var(mean of n) ~ (1 + rho) / (1 - rho) / n: 9x the i.i.d. value
    # at rho = 0.8 (correlation over ~5 frames, like 5-frame context windows at 100 Hz).
    n, rho, reps = 1600, 0.8, 300
    x = _ar1(n, rho, seed=1)
    truth = (1 + rho) / (1 - rho) / n
    gen = torch.Generator().manual_seed(2)
    block = block_length(n)
    blocks = torch.stack([x[block_bootstrap_indices(n, block, gen)].mean() for _ in range(reps)]).var().item()
    frames = torch.stack([x[torch.randint(0, n, (n,), generator=gen)].mean() for _ in range(reps)]).var().item()
    # Frame resampling sees about 1/9 of it; blocks of n^(1/3) = 12 frames see most of it (block
    # bootstraps are biased low by about (correlation length / block length), here ~40%), and 300
    # resamples estimate a variance to +-16% (one standard error): so [0.4, 1.5] for blocks, < 0.25
    # for frames cannot both hold by luck.
    assert 0.4 < blocks / truth < 1.5
    assert frames / truth < 0.25


def test_a_split_with_few_utterances_gets_a_block_interval():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((300, 2)).astype(np.float32) for _ in range(12)]
    ys = [(a + rng.standard_normal(a.shape)).astype(np.float32) for a in xs]
    r = minecli.estimate_mi(xs, ys, steps=50, validate_every=25, progress=False, baseline=False,
                            null_permutations=0, bootstrap=50)
    assert r.n_test_utts < 10
    assert r.ci_method == f"blocks of {block_length(r.n_test_frames)} consecutive frames"
    assert r.ci95_nats[0] <= r.mi_nats <= r.ci95_nats[1]

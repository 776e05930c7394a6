"""The k-means math: seeding, Lloyd iterations, determinism."""
from __future__ import annotations

import torch

from minecli_kmeans.kmeans import assign, fit_kmeans, kmeans_pp, squared_distances


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four well-separated Gaussian blobs in 3-d: (points, true labels, true means)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
    labels = torch.arange(4).repeat_interleave(50)
    points = means[labels] + 0.3 * torch.randn(200, 3, generator=gen)
    return points, labels, means


def test_squared_distances_match_cdist():
    x, _, means = blobs()
    assert torch.allclose(squared_distances(x, means), torch.cdist(x, means) ** 2, atol=1e-3)


def test_recovers_separated_clusters():
    x, labels, means = blobs()
    centroids, mse = fit_kmeans(x, 4, iters=20, seed=0)
    # every true mean has a centroid close to it, and the clusters are pure
    nearest = torch.cdist(means, centroids).min(dim=1).values
    assert (nearest < 0.2).all(), nearest
    idx, _ = assign(x, centroids)
    for k in range(4):
        assert len(set(idx[labels == k].tolist())) == 1
    assert 0.0 < mse < 0.5  # 3 dims x 0.3^2 = 0.27 expected


def test_same_seed_same_codebook():
    x, _, _ = blobs(1)
    a, _ = fit_kmeans(x, 6, iters=5, seed=3)
    b, _ = fit_kmeans(x, 6, iters=5, seed=3)
    assert torch.equal(a, b)
    assert a.dtype == torch.float32 and a.shape == (6, 3)


def test_kmeans_pp_picks_distinct_points_and_survives_duplicates():
    x, _, _ = blobs()
    seeds = kmeans_pp(x.double(), 4, torch.Generator().manual_seed(0))
    # k-means++ seeding lands one seed in each far-apart blob
    assert len(set(assign(seeds, x.double()[[0, 50, 100, 150]])[0].tolist())) == 4
    same = torch.ones(20, 2)  # fewer distinct frames than clusters, as in digital silence
    centroids, mse = fit_kmeans(same, 4, iters=3, seed=0)
    assert torch.equal(centroids, torch.ones(4, 2)) and mse == 0.0


def test_too_few_frames_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="3 frames cannot make 4 clusters"):
        fit_kmeans(torch.zeros(3, 2), 4, iters=1, seed=0)

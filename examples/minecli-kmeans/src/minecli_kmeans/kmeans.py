"""k-means in torch: k-means++ seeding, then Lloyd iterations; the same seed gives the same codebook."""
from __future__ import annotations

import torch

#: rows per distance block, so assigning a large train set never builds one huge [N, K] matrix
CHUNK = 16384


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``[N, K]`` squared Euclidean distances between rows of x and the centroids."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return d.clamp_(min=0.0)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid of each row ``[N]`` (int64) and that squared distance ``[N]``."""
    idx = torch.empty(x.shape[0], dtype=torch.long)
    dist = torch.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], CHUNK):
        d = squared_distances(x[start:start + CHUNK], centroids)
        best, arg = d.min(dim=1)
        idx[start:start + CHUNK] = arg
        dist[start:start + CHUNK] = best
    return idx, dist


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centroid drawn with probability proportional to its squared distance."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    d2 = squared_distances(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        total = float(d2.sum())
        if total > 0.0:
            nxt = int(torch.multinomial(d2 / total, 1, generator=generator))
        else:  # fewer distinct frames than clusters (e.g. digital silence): duplicates are unavoidable
            nxt = int(torch.randint(n, (1,), generator=generator))
        chosen.append(nxt)
        d2 = torch.minimum(d2, squared_distances(x, x[nxt:nxt + 1])[:, 0])
    return x[chosen].clone()


def fit_kmeans(x: torch.Tensor, k: int, iters: int, seed: int) -> tuple[torch.Tensor, float]:
    """Cluster the rows of x ``[N, D]`` into k centroids; returns (centroids ``[k, D]`` float32, mean squared error).

    Computed in float64, so the codebook does not hinge on float32 summation order.
    """
    if x.shape[0] < k:
        raise ValueError(f"{x.shape[0]} frames cannot make {k} clusters")
    data = x.to(torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    centroids = kmeans_pp(data, k, gen)
    for _ in range(iters):
        idx, dist = assign(data, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, idx, data)
        counts = torch.bincount(idx, minlength=k)
        new = sums / counts.clamp(min=1)[:, None].to(data.dtype)
        empty = (counts == 0).nonzero()[:, 0]
        if len(empty):
            # An empty cluster restarts at the frames worst served by the current codebook.
            far = torch.topk(dist, len(empty)).indices
            new[empty] = data[far]
        if torch.equal(new, centroids):
            break
        centroids = new
    _, dist = assign(data, centroids)
    return centroids.to(torch.float32), float(dist.mean())

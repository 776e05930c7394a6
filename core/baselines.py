"""Classical mutual-information estimates, printed beside the neural number as a sanity check.

On low-dimensional token data these beat every neural estimator, so a MINE result that disagrees
with them deserves a second look. numpy and scipy only; all results are in nats.

- ``discrete_mi``: plug-in MI of two index streams, minus the mean over shuffled pairings.
- ``ross_knn_mi``: Ross (2014) k-nearest-neighbour MI of an index stream and a float stream.
- ``ksg_mi``: Kraskov-Stoegbauer-Grassberger (algorithm 1) MI of two low-dimensional float streams.
- ``gaussian_mi``: the Gaussian (CCA) reference, exact for jointly Gaussian data.
- ``choose_baseline``: picks the estimate that is reliable for a pair of streams, or says why none is.

Index streams are ``[N]`` or ``[N, C]``; a row of C codebooks is one symbol. Float streams are
``[N]`` or ``[N, D]``.
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

Kind = Literal["float", "index"]

# Bound on a mixed-radix code; below 2**62, so code * span + column always fits in int64.
_MAX_CODE = 2**62
# Relative size of the tie-breaking jitter, as in scikit-learn's mutual_info_* functions.
_JITTER = 1e-10


# --------------------------------------------------------------------------- discrete streams


def _symbols(idx: np.ndarray) -> tuple[np.ndarray, int]:
    """Map an index stream ``[N]`` or ``[N, C]`` to dense symbol codes ``[N]`` in 0..K-1 and K."""
    a = np.asarray(idx)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"An index stream must be [N] or [N, C], not shape {np.shape(idx)}")
    n = a.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        # A mixed-radix code turns each row into one integer, much faster than np.unique(axis=0).
        # When the next codebook would overflow int64, the code so far is first densified to
        # 0..K-1 with K <= N, which always leaves room for one more codebook.
        code, size = _dense(a[:, 0].astype(np.int64))
        for c in range(1, a.shape[1]):
            col, span = _dense(a[:, c].astype(np.int64))
            if size * span >= _MAX_CODE:
                code, size = _dense(code)
            code, size = code * span + col, size * span
        return _dense(code)
    # Non-integer labels: sort whole rows.
    uniq, inv = np.unique(a, axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64, copy=False), int(uniq.shape[0])


def _dense(code: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel integer codes ``[N]`` as 0..K-1 (K distinct values, order kept) and return K."""
    lo, hi = int(code.min()), int(code.max())
    if hi - lo <= 4 * code.size + 1024:
        # A small range: bincount and a lookup table are O(N), where a sort is O(N log N).
        present = np.bincount(code - lo, minlength=hi - lo + 1) > 0
        remap = np.cumsum(present) - 1
        return remap[code - lo], int(present.sum())
    uniq, inv = np.unique(code, return_inverse=True)
    return inv.reshape(-1).astype(np.int64, copy=False), int(uniq.size)


def _entropy_from_counts(counts: np.ndarray) -> float:
    """Plug-in entropy in nats of a histogram: log N - sum(c log c) / N."""
    c = counts[counts > 0].astype(np.float64)
    n = c.sum()
    if n == 0:
        return 0.0
    return float(math.log(n) - np.dot(c, np.log(c)) / n)


def plugin_entropy(idx: np.ndarray) -> float:
    """Plug-in (maximum-likelihood) entropy in nats of an index stream ``[N]`` or ``[N, C]``."""
    codes, k = _symbols(idx)
    return _entropy_from_counts(np.bincount(codes, minlength=k))


def _joint_entropy(cx: np.ndarray, cy: np.ndarray, ky: int, dense: bool) -> float:
    """Plug-in entropy of the pairs (cx, cy) given dense codes; bincount when the table fits."""
    joint = cx * ky + cy
    if dense:
        return _entropy_from_counts(np.bincount(joint))
    # A huge but sparse table: counting the distinct pairs by sorting keeps memory at O(N).
    _, counts = np.unique(joint, return_counts=True)
    return _entropy_from_counts(counts)


def discrete_mi(x: np.ndarray, y: np.ndarray, n_shuffles: int = 20, seed: int = 0) -> dict[str, float]:
    """Plug-in MI of two index streams, bias-corrected by the mean over shuffled pairings.

    Returns ``mi_nats`` (raw minus bias, floored at 0), ``raw_nats`` (plug-in MI), ``bias_nats``
    (mean plug-in MI with y permuted), ``null_sd_nats`` (its standard deviation) and ``p_value``
    for "no dependence", (1 + #shuffled >= raw) / (1 + n_shuffles).
    """
    cx, kx = _symbols(x)
    cy, ky = _symbols(y)
    if cx.shape[0] != cy.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, not {cx.shape[0]} and {cy.shape[0]}")
    if n_shuffles < 1:
        raise ValueError(f"n_shuffles must be at least 1, not {n_shuffles}")
    n = cx.shape[0]
    hx = _entropy_from_counts(np.bincount(cx, minlength=kx))
    hy = _entropy_from_counts(np.bincount(cy, minlength=ky))
    # A dense joint histogram costs kx*ky memory; worth it only while that is comparable to N.
    dense = kx * ky <= max(8 * n, 1 << 22)
    raw = hx + hy - _joint_entropy(cx, cy, ky, dense)
    rng = np.random.default_rng(seed)
    # Permuting y keeps both marginals, so only the joint entropy changes between shuffles.
    null = np.array([hx + hy - _joint_entropy(cx, cy[rng.permutation(n)], ky, dense)
                     for _ in range(n_shuffles)])
    bias = float(null.mean())
    return {
        "mi_nats": max(0.0, raw - bias),
        "raw_nats": float(raw),
        "bias_nats": bias,
        "null_sd_nats": float(null.std(ddof=1)) if n_shuffles > 1 else 0.0,
        "p_value": float((1 + np.sum(null >= raw)) / (1 + n_shuffles)),
    }


# --------------------------------------------------------------------------- continuous streams


def _as_float2d(a: np.ndarray, name: str) -> np.ndarray:
    """A float stream as a finite float64 ``[N, D]`` array."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [N] or [N, D], not shape {np.shape(a)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; drop or fill those frames first")
    return arr


def _scale_and_jitter(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Divide each column by its std and add tiny noise, as scikit-learn does before kNN MI.

    Max-norm neighbourhoods are not scale invariant, so unit variance per column keeps one loud
    dimension from deciding every neighbour; the jitter breaks ties from repeated values, which
    would otherwise give zero radii.
    """
    sd = a.std(axis=0)
    a = a / np.where(sd > 0, sd, 1.0)
    mean_abs = np.maximum(1.0, np.mean(np.abs(a), axis=0))
    return a + _JITTER * mean_abs * rng.standard_normal(a.shape)


def _count_within(points: np.ndarray, centres: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Number of points within max-norm distance <= radius of each centre (a centre that is one of
    the points counts itself)."""
    tree = cKDTree(points)
    return np.asarray(tree.query_ball_point(centres, radius, p=np.inf, return_length=True,
                                            workers=-1), dtype=np.float64)


def _queries(n: int, max_queries: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of the points whose neighbourhoods are counted: all, or a random subset."""
    if max_queries is None or max_queries >= n:
        return np.arange(n)
    if max_queries < 1:
        raise ValueError(f"max_queries must be at least 1, not {max_queries}")
    return np.sort(rng.choice(n, size=max_queries, replace=False))


def ross_knn_mi(labels: np.ndarray, y: np.ndarray, k: int = 3, seed: int = 0,
                max_queries: int | None = None) -> float:
    """Ross (2014) kNN estimate of MI in nats between an index stream and a float stream ``[N, D]``.

    Follows scikit-learn's ``mutual_info_classif``: columns scaled to unit variance, jitter of
    1e-10, max-norm distances, classes seen once dropped, k shrunk for classes with <= k members,
    result floored at 0. ``max_queries`` averages the per-point terms over a random subset of
    points (neighbours are still searched among all N): unbiased, a little noisier, and much
    faster when radii are wide (large vocabularies, several dims).
    """
    codes, n_classes = _symbols(labels)
    yy = _as_float2d(y, "y")
    if codes.shape[0] != yy.shape[0]:
        raise ValueError(f"labels and y must have the same number of rows, not {codes.shape[0]} and {yy.shape[0]}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    rng = np.random.default_rng(seed)
    yy = _scale_and_jitter(yy, rng)
    class_counts = np.bincount(codes, minlength=n_classes)
    # A class seen once has no within-class neighbour, so it carries no usable distance.
    keep = class_counts[codes] > 1
    codes, yy = codes[keep], yy[keep]
    n = codes.shape[0]
    if n == 0:
        return 0.0
    is_query = np.zeros(n, dtype=bool)
    is_query[_queries(n, max_queries, rng)] = True
    radius = np.zeros(n)
    k_all = np.zeros(n)
    # Sorting by class once lets each class be sliced instead of masked (vocabularies run to 1000s).
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for members in np.split(order, bounds):
        asked = members[is_query[members]]
        if asked.size == 0:
            continue
        kc = min(k, members.size - 1)
        dist, _ = cKDTree(yy[members]).query(yy[asked], k=kc + 1, p=np.inf)
        # Column 0 is the point itself; nextafter makes the later count strict (< the k-th distance).
        radius[asked] = np.nextafter(dist[:, kc], 0)
        k_all[asked] = kc
    q = np.flatnonzero(is_query)
    m_all = _count_within(yy, yy[q], radius[q])
    counts = class_counts[codes[q]].astype(np.float64)
    mi = digamma(n) + np.mean(digamma(k_all[q])) - np.mean(digamma(counts)) - np.mean(digamma(m_all))
    return max(0.0, float(mi))


def ksg_mi(x: np.ndarray, y: np.ndarray, k: int = 3, seed: int = 0,
           max_queries: int | None = None) -> float:
    """Kraskov-Stoegbauer-Grassberger (algorithm 1) estimate of MI in nats; for low dimensions.

    Max-norm in the joint space, columns scaled to unit variance with 1e-10 jitter as in
    scikit-learn's ``mutual_info_regression``; result floored at 0. ``max_queries`` works as in
    ``ross_knn_mi``.
    """
    xx = _as_float2d(x, "x")
    yy = _as_float2d(y, "y")
    if xx.shape[0] != yy.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, not {xx.shape[0]} and {yy.shape[0]}")
    n = xx.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and N-1 = {n - 1}, not {k}")
    rng = np.random.default_rng(seed)
    xx, yy = _scale_and_jitter(xx, rng), _scale_and_jitter(yy, rng)
    q = _queries(n, max_queries, rng)
    xy = np.hstack([xx, yy])
    dist, _ = cKDTree(xy).query(xy[q], k=k + 1, p=np.inf)
    # Strictly inside the k-th neighbour's distance, as algorithm 1 requires.
    eps = np.nextafter(dist[:, k], 0)
    # The counts include the point itself, i.e. they are n_x + 1 and n_y + 1 of the paper.
    nx1 = _count_within(xx, xx[q], eps)
    ny1 = _count_within(yy, yy[q], eps)
    mi = digamma(k) + digamma(n) - np.mean(digamma(nx1)) - np.mean(digamma(ny1))
    return max(0.0, float(mi))


def _inv_sqrt(cov: np.ndarray, ridge: float) -> np.ndarray:
    """Symmetric inverse square root of a covariance, with a ridge relative to its mean variance."""
    d = cov.shape[0]
    scale = float(np.trace(cov)) / d if d else 1.0
    w, v = np.linalg.eigh(cov + ridge * max(scale, 1e-300) * np.eye(d))
    w = np.maximum(w, 1e-300)
    return (v / np.sqrt(w)) @ v.T


def canonical_correlations(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Canonical correlations of x ``[N, Dx]`` and y ``[N, Dy]``, largest first, in [0, 1]."""
    xx = _as_float2d(x, "x")
    yy = _as_float2d(y, "y")
    if xx.shape[0] != yy.shape[0]:
        raise ValueError(f"x and y must have the same number of rows, not {xx.shape[0]} and {yy.shape[0]}")
    n = xx.shape[0]
    if n < 2:
        raise ValueError("canonical correlations need at least 2 rows")
    dx = xx.shape[1]
    z = np.hstack([xx, yy])
    z -= z.mean(axis=0)
    # One product for the whole joint covariance: one pass over the data instead of three.
    cov = z.T @ z / (n - 1)
    sxx, syy, sxy = cov[:dx, :dx], cov[dx:, dx:], cov[:dx, dx:]
    # The singular values of the whitened cross-covariance are the canonical correlations.
    rho = np.linalg.svd(_inv_sqrt(sxx, ridge) @ sxy @ _inv_sqrt(syy, ridge), compute_uv=False)
    return np.clip(rho, 0.0, 1.0)


def gaussian_mi(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> float:
    """MI in nats of jointly Gaussian x, y with the sample covariance: -0.5 sum log(1 - rho_i^2)."""
    rho = canonical_correlations(x, y, ridge)
    # rho = 1 means a deterministic linear relation and infinite MI; cap it at a finite value.
    rho = np.minimum(rho, 1.0 - 1e-12)
    return float(-0.5 * np.sum(np.log1p(-rho**2)))


def gaussian_mi_null_mean(n: int, dx: int, dy: int) -> float:
    """Expected ``gaussian_mi`` in nats for N independent Gaussian rows of dims dx and dy.

    Under independence Wilks' lambda = prod(1 - rho_i^2) is a product of dy independent
    Beta((N - dx - i) / 2, dx / 2) variables, so E[-0.5 log lambda] is a sum of digamma terms
    (about dx * dy / (2N) when N is large).
    """
    if n - dx - dy < 1:
        return math.inf
    i = np.arange(1, dy + 1)
    return float(0.5 * np.sum(digamma((n - i) / 2) - digamma((n - dx - i) / 2)))


# --------------------------------------------------------------------------- choosing an estimate


def _subsample(n: int, max_rows: int, rng: np.random.Generator) -> np.ndarray | None:
    """Indices of a random subsample of at most max_rows rows, or None to use all of them."""
    if n <= max_rows:
        return None
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def _rows(a: np.ndarray, sel: np.ndarray | None) -> np.ndarray:
    """The selected rows of a, or a itself when sel is None."""
    return a if sel is None else a[sel]


def choose_baseline(
    x: np.ndarray,
    y: np.ndarray,
    x_kind: Kind,
    y_kind: Kind,
    *,
    max_joint_symbols: int | None = None,
    max_float_dim: int = 8,
    max_ksg_dim: int = 4,
    min_rows_per_class: float = 5.0,
    max_knn_rows: int = 20_000,
    max_knn_queries: int | None = 5_000,
    max_gaussian_rows: int = 50_000,
    k: int = 3,
    n_shuffles: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """The classical MI estimate that is reliable for a pair of streams, or the reason there is none.

    Always returns a dict. When an estimate is reliable: ``method`` (``"discrete_plugin"``,
    ``"ross_knn"``, ``"ksg"`` or ``"gaussian"``), ``mi_nats``, a one-line ``note`` and extra fields
    (``n_rows`` used, plus per-method details). When none is: ``method`` and ``mi_nats`` are None
    and ``reason`` says why in one line.

    - index-index: ``discrete_mi`` when the observed joint alphabet is at most
      ``max_joint_symbols`` (default N // 4, i.e. about 4 rows per cell of the table).
    - index-float either way round: ``ross_knn_mi`` on at most ``max_knn_rows`` rows (terms averaged
      over ``max_knn_queries`` of them) when the float dim is at most ``max_float_dim`` and the
      symbols have on average at least ``min_rows_per_class`` rows each.
    - float-float: ``ksg_mi`` (rows and queries as above) when both dims are at most
      ``max_ksg_dim``, with the Gaussian reference in ``gaussian_nats``; otherwise the Gaussian
      reference alone on at most ``max_gaussian_rows`` rows. The Gaussian value is corrected by
      its expected value under independence (``gaussian_bias_nats``, about Dx*Dy/(2N)).
    """
    for kind, name in ((x_kind, "x_kind"), (y_kind, "y_kind")):
        if kind not in ("float", "index"):
            raise ValueError(f"{name} must be 'float' or 'index', not {kind!r}")
    n = int(np.shape(x)[0])
    if int(np.shape(y)[0]) != n:
        raise ValueError(f"x and y must have the same number of rows, not {n} and {np.shape(y)[0]}")
    rng = np.random.default_rng(seed)

    def none(reason: str) -> dict[str, Any]:
        return {"method": None, "mi_nats": None, "reason": reason, "n_rows": n}

    if n < 10 * (k + 1):
        return none(f"only {n} rows; classical estimates need at least {10 * (k + 1)}")

    if x_kind == "index" and y_kind == "index":
        cx, kx = _symbols(x)
        cy, ky = _symbols(y)
        joint = int(np.unique(cx * ky + cy).size)
        limit = n // 4 if max_joint_symbols is None else max_joint_symbols
        if joint > limit:
            return none(f"{joint} distinct symbol pairs in {n} rows (limit {limit}); "
                        "the plug-in table is too sparse to trust")
        res = discrete_mi(cx, cy, n_shuffles=n_shuffles, seed=seed)
        return {"method": "discrete_plugin", **res, "n_rows": n,
                "x_symbols": kx, "y_symbols": ky, "joint_symbols": joint,
                "note": f"plug-in MI minus its mean over {n_shuffles} shuffled pairings "
                        f"({kx}x{ky} observed symbols)"}

    if x_kind != y_kind:
        labels, feats = (x, y) if x_kind == "index" else (y, x)
        feats = np.asarray(feats)
        dim = 1 if feats.ndim == 1 else int(feats.shape[1])
        if dim > max_float_dim:
            return none(f"the float stream has {dim} dims (limit {max_float_dim}); "
                        "nearest-neighbour estimates are unreliable there")
        sel = _subsample(n, max_knn_rows, rng)
        codes, n_classes = _symbols(_rows(np.asarray(labels), sel))
        m = codes.shape[0]
        if m / n_classes < min_rows_per_class:
            return none(f"{n_classes} distinct symbols in {m} rows (fewer than "
                        f"{min_rows_per_class:g} rows per symbol); too few to find neighbours")
        singletons = int(np.sum(np.bincount(codes) == 1))
        mi = ross_knn_mi(codes, _rows(feats, sel), k=k, seed=seed, max_queries=max_knn_queries)
        return {"method": "ross_knn", "mi_nats": mi, "n_rows": m, "k": k, "symbols": n_classes,
                "dropped_rows": singletons,
                "note": f"Ross kNN estimate (k={k}) on {m} rows, {n_classes} symbols "
                        f"against {dim} float dims"}

    x, y = np.asarray(x), np.asarray(y)
    gsel = _subsample(n, max_gaussian_rows, rng)
    # Subsample before converting, so a long float32 stream is never copied whole to float64.
    gx, gy = _as_float2d(_rows(x, gsel), "x"), _as_float2d(_rows(y, gsel), "y")
    dx, dy = gx.shape[1], gy.shape[1]
    m = gx.shape[0]
    if m < 10 * (dx + dy):
        return none(f"{dx}+{dy} float dims need at least {10 * (dx + dy)} rows for a "
                    f"covariance estimate, got {m}")
    raw = gaussian_mi(gx, gy)
    bias = gaussian_mi_null_mean(m, dx, dy)
    g = {"gaussian_nats": max(0.0, raw - bias), "gaussian_raw_nats": raw,
         "gaussian_bias_nats": bias, "gaussian_rows": m}
    if dx <= max_ksg_dim and dy <= max_ksg_dim:
        sel = _subsample(n, max_knn_rows, rng)
        mi = ksg_mi(_rows(x, sel), _rows(y, sel), k=k, seed=seed, max_queries=max_knn_queries)
        rows = n if sel is None else sel.size
        return {"method": "ksg", "mi_nats": mi, "n_rows": rows, "k": k, **g,
                "note": f"KSG kNN estimate (k={k}) on {rows} rows; gaussian_nats is the "
                        "Gaussian (CCA) reference, exact only for Gaussian data"}
    return {"method": "gaussian", "mi_nats": g["gaussian_nats"], "n_rows": m, **g,
            "note": f"Gaussian (CCA) reference on {m} rows, {dx}x{dy} dims: exact for jointly "
                    "Gaussian data, not a bound otherwise"}

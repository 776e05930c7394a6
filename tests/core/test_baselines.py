"""Classical MI baselines against ground truth: exact discrete tables, Gaussians, a Gaussian mixture."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from minecli.core.baselines import (
    canonical_correlations,
    choose_baseline,
    discrete_mi,
    gaussian_mi,
    gaussian_mi_null_mean,
    ksg_mi,
    plugin_entropy,
    ross_knn_mi,
)


# --------------------------------------------------------------------------- helpers


def table_mi(p: np.ndarray) -> tuple[float, float]:
    """Exact MI of a joint table and the sd of the pointwise MI log p(x,y)/(p(x)p(y))."""
    outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
    m = p > 0
    pmi = np.log(p[m] / outer[m])
    mi = float(np.sum(p[m] * pmi))
    return mi, float(np.sqrt(np.sum(p[m] * (pmi - mi) ** 2)))


def sample_table(p: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    flat = rng.choice(p.size, size=n, p=p.ravel())
    return flat // p.shape[1], flat % p.shape[1]


def correlated_gaussians(n: int, d: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y of d dims each with corr(x_i, y_i) = rho; true MI is -0.5 d log(1 - rho^2)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))


def sample_mixture(mu: np.ndarray, sigma: float, n: int, rng: np.random.Generator):
    """A uniform label and y = mu[label] + sigma * noise."""
    lab = rng.integers(0, mu.shape[0], n)
    return lab, mu[lab] + sigma * rng.standard_normal((n, mu.shape[1]))


def mixture_mi(mu: np.ndarray, sigma: float, m: int = 200_000) -> tuple[float, float]:
    """Monte Carlo MI of the mixture from its exact densities: E[log p(y|l) - log p(y)], and its SE."""
    lab, y = sample_mixture(mu, sigma, m, np.random.default_rng(12345))
    # Gaussian normalising constants are shared by all components, so they cancel in the ratio.
    loglik = -0.5 * ((y[:, None, :] - mu[None]) ** 2).sum(-1) / sigma**2
    ratio = loglik[np.arange(m), lab] - (logsumexp(loglik, axis=1) - math.log(mu.shape[0]))
    return float(ratio.mean()), float(ratio.std() / math.sqrt(m))


# --------------------------------------------------------------------------- plug-in entropy


def test_plugin_entropy_of_uniform_and_known_histogram():
    assert plugin_entropy(np.repeat(np.arange(10), 7)) == pytest.approx(math.log(10), abs=1e-12)
    counts = np.array([5, 3, 2])
    p = counts / counts.sum()
    assert plugin_entropy(np.repeat([7, -2, 40], counts)) == pytest.approx(-np.sum(p * np.log(p)))
    assert plugin_entropy(np.zeros(5, dtype=int)) == 0.0


def test_codebook_rows_are_one_symbol():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 3000), rng.integers(0, 6, 3000)
    rows = np.stack([a, b], axis=1)
    sym = a * 6 + b
    assert plugin_entropy(rows) == pytest.approx(plugin_entropy(sym), abs=1e-12)
    # Entropy of rows is the joint entropy, so it exceeds either codebook alone.
    assert plugin_entropy(rows) > max(plugin_entropy(a), plugin_entropy(b))
    y = (sym % 5) + rng.integers(0, 2, 3000)
    assert discrete_mi(rows, y, seed=3) == discrete_mi(sym, y, seed=3)
    feats = sym[:, None] / 8.0 + rng.standard_normal((3000, 1))
    assert ross_knn_mi(rows, feats, seed=1) == ross_knn_mi(sym, feats, seed=1)


def test_wide_codes_and_float_labels_match_row_unique():
    rng = np.random.default_rng(1)
    # Three codebooks with values up to 2**40: their mixed-radix code would overflow int64.
    base = rng.integers(0, 50, (2000, 3))
    wide = base * (2**40 // 50)
    reference = np.unique(base, axis=0, return_counts=True)[1]
    p = reference / reference.sum()
    expected = float(-np.sum(p * np.log(p)))
    assert plugin_entropy(wide) == pytest.approx(expected, abs=1e-12)
    assert plugin_entropy(base.astype(np.float32)) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- discrete MI


def test_discrete_mi_bias_correction_on_exact_table():
    rng = np.random.default_rng(2024)
    p = rng.dirichlet(np.full(64 * 32, 0.5)).reshape(64, 32)
    truth, pmi_sd = table_mi(p)
    n = 20_000
    x, y = sample_table(p, n, rng)
    res = discrete_mi(x, y, n_shuffles=20, seed=0)
    # The plug-in estimate fluctuates with sd ~ sd(pointwise MI)/sqrt(N) (about 0.008 nats here);
    # 4 such sds plus 0.005 for the leading-order bias formula's own error.
    tol = 4 * pmi_sd / math.sqrt(n) + 0.005
    raw_bias = (64 - 1) * (32 - 1) / (2 * n)
    assert res["raw_nats"] - truth == pytest.approx(raw_bias, abs=tol)
    assert res["bias_nats"] == pytest.approx(raw_bias, abs=tol)
    assert abs(res["mi_nats"] - truth) < tol
    # Corrected must be much closer than raw; over 10 tables the corrected error was -0.004 +- 0.008.
    assert abs(res["mi_nats"] - truth) < 0.5 * abs(res["raw_nats"] - truth)
    assert res["p_value"] == pytest.approx(1 / 21)
    assert res["null_sd_nats"] > 0


def test_discrete_mi_of_independent_streams():
    p_values, estimates = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        x, y = rng.integers(0, 16, 20_000), rng.integers(0, 16, 20_000)
        res = discrete_mi(x, y, seed=seed)
        p_values.append(res["p_value"])
        estimates.append(res["mi_nats"])
    # Under independence 2N * raw is chi2 with 15*15 dof: sd 21/(2N) ~ 0.0005 nats; 0.002 is 4 sds.
    assert max(estimates) < 0.002
    # p-values are uniform on {1/21, ..., 1} under the null: mean 0.52; 8 draws have sd ~0.1.
    assert np.mean(p_values) > 0.25
    assert min(p_values) >= 1 / 21


def test_discrete_mi_sparse_table_path():
    # All-distinct symbols: every table has N singleton cells, so raw = bias = log N exactly.
    n = 5000
    rng = np.random.default_rng(0)
    x, y = rng.permutation(n), rng.permutation(n)
    res = discrete_mi(x, y, n_shuffles=3)
    assert res["raw_nats"] == pytest.approx(math.log(n), abs=1e-9)
    assert res["mi_nats"] == pytest.approx(0.0, abs=1e-9)
    assert res["p_value"] == 1.0


# --------------------------------------------------------------------------- Gaussian and KSG


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_gaussian_and_ksg_on_correlated_gaussians(d, rho):
    n = 10_000
    x, y = correlated_gaussians(n, d, rho, seed=10 * d + int(10 * rho))
    truth = -0.5 * d * math.log(1 - rho**2)
    # Delta method: -0.5 log(1 - r^2) has sd rho/sqrt(N) per component; 4 sds plus the
    # d^2/(2N) small-sample bias.
    tol = 4 * rho * math.sqrt(d / n) + d * d / (2 * n)
    assert gaussian_mi(x, y) == pytest.approx(truth, abs=tol)
    # Over 20 seeds at N=10k, KSG (k=3) had sd <= 0.013 and a bias up to +0.017 (d=2, rho=0.9),
    # its known upward bias for strongly correlated pairs; 0.06 is that bias plus ~3 sds.
    assert ksg_mi(x, y, k=3) == pytest.approx(truth, abs=0.06)


def test_canonical_correlations_recover_components():
    rng = np.random.default_rng(5)
    n = 20_000
    z = rng.standard_normal((n, 3))
    rhos = np.array([0.8, 0.4, 0.0])
    y = rhos * z + np.sqrt(1 - rhos**2) * rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, 3))  # an invertible mixing leaves canonical correlations alone
    rho_hat = canonical_correlations(x, y)
    # Each sample canonical correlation has sd (1 - rho^2)/sqrt(N) <= 0.007; the zero one is
    # inflated to about sqrt(dof)/sqrt(N) ~ 0.01, hence 0.03.
    np.testing.assert_allclose(rho_hat, rhos, atol=0.03)


def test_gaussian_null_mean_matches_simulation():
    n, dx, dy, reps = 200, 5, 4, 300
    rng = np.random.default_rng(9)
    sims = [gaussian_mi(rng.standard_normal((n, dx)), rng.standard_normal((n, dy))) for _ in range(reps)]
    expected = gaussian_mi_null_mean(n, dx, dy)
    assert expected == pytest.approx(dx * dy / (2 * n), rel=0.15)  # the large-N approximation
    # Single draws have sd about sqrt(2 dx dy)/(2N) = 0.016; the mean of 300 has sd ~0.001.
    assert np.mean(sims) == pytest.approx(expected, abs=0.004)


def test_gaussian_mi_handles_duplicated_columns():
    x, y = correlated_gaussians(2000, 1, 0.6, seed=0)
    # A repeated column makes the covariance singular; the ridge keeps the answer finite and right.
    value = gaussian_mi(np.hstack([x, x]), y)
    assert math.isfinite(value)
    assert value == pytest.approx(gaussian_mi(x, y), abs=1e-3)


# --------------------------------------------------------------------------- Ross kNN


@pytest.mark.parametrize(
    ("n_labels", "dim", "sigma", "tol"),
    [
        # Over 10 seeds at N=10k: error +0.002 +- 0.007 (D=1), +0.022 +- 0.010 (D=2, the kNN bias
        # grows with dimension); tolerances are the bias plus ~3 sds and the Monte Carlo SE (0.002).
        (8, 1, 1.0, 0.03),
        (16, 2, 0.7, 0.06),
    ],
)
def test_ross_knn_on_gaussian_mixture(n_labels, dim, sigma, tol):
    mu = 1.5 * np.random.default_rng(7).standard_normal((n_labels, dim))
    truth, mc_se = mixture_mi(mu, sigma)
    assert mc_se < 0.003
    lab, y = sample_mixture(mu, sigma, 10_000, np.random.default_rng(1))
    assert ross_knn_mi(lab, y, k=3) == pytest.approx(truth, abs=tol)


def test_ross_knn_query_subset_is_close_to_full():
    mu = 1.5 * np.random.default_rng(7).standard_normal((16, 2))
    lab, y = sample_mixture(mu, 0.7, 20_000, np.random.default_rng(3))
    full = ross_knn_mi(lab, y)
    # Averaging over 5000 of 20000 points raised the sd over seeds from 0.007 to 0.008 nats.
    assert ross_knn_mi(lab, y, max_queries=5000) == pytest.approx(full, abs=0.03)


def test_ross_knn_matches_sklearn_mutual_info_classif():
    sklearn_fs = pytest.importorskip("sklearn.feature_selection")
    rng = np.random.default_rng(4)
    lab = rng.integers(0, 64, 5000)
    y = lab / 10.0 + rng.standard_normal(5000)
    ref = sklearn_fs.mutual_info_classif(y[:, None], lab, n_neighbors=3, random_state=0)[0]
    # Same statistic on the same tie-free data: only float rounding can differ.
    assert ross_knn_mi(lab, y, k=3) == pytest.approx(ref, abs=1e-9)
    # Rounded values tie, and the two implementations break ties with different 1e-10 jitter;
    # over 5 seeds the difference had sd 0.009 nats.
    y_ties = np.round(y, 1)
    ref = sklearn_fs.mutual_info_classif(y_ties[:, None], lab, n_neighbors=3, random_state=0)[0]
    assert ross_knn_mi(lab, y_ties, k=3) == pytest.approx(ref, abs=0.04)


def test_ross_knn_drops_singleton_classes_and_ignores_independent_data():
    rng = np.random.default_rng(6)
    lab = rng.integers(0, 8, 4000)
    lab[:20] = np.arange(100, 120)  # twenty classes seen once
    y = rng.standard_normal((4000, 2))
    # Independent streams: the estimate is floored at 0 and its sd is ~0.005 at N=4000.
    assert ross_knn_mi(lab, y) < 0.02


# --------------------------------------------------------------------------- choose_baseline


def test_choose_index_index_small_alphabet():
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.full(16 * 8, 1.0)).reshape(16, 8)
    truth, _ = table_mi(p)
    x, y = sample_table(p, 10_000, rng)
    res = choose_baseline(x, y, "index", "index")
    assert res["method"] == "discrete_plugin"
    # sd(pointwise MI)/sqrt(N) is under 0.01 here.
    assert res["mi_nats"] == pytest.approx(truth, abs=0.03)
    assert {"raw_nats", "bias_nats", "p_value", "note"} <= res.keys()


def test_choose_index_index_huge_vocabulary_says_why():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1000, (5000, 2))
    res = choose_baseline(x, rng.integers(0, 500, 5000), "index", "index")
    assert res["method"] is None and res["mi_nats"] is None
    assert "distinct symbol pairs" in res["reason"]


def test_choose_index_float_either_way_round():
    mu = 1.5 * np.random.default_rng(7).standard_normal((8, 1))
    truth, _ = mixture_mi(mu, 1.0, m=50_000)
    lab, y = sample_mixture(mu, 1.0, 30_000, np.random.default_rng(2))
    res = choose_baseline(lab, y, "index", "float", max_knn_rows=10_000)
    assert res["method"] == "ross_knn"
    assert res["n_rows"] == 10_000
    # 10k rows: sd 0.007 (see the mixture test) plus the smaller Monte Carlo's SE of 0.004.
    assert res["mi_nats"] == pytest.approx(truth, abs=0.04)
    rev = choose_baseline(y, lab, "float", "index", max_knn_rows=10_000)
    assert rev["method"] == "ross_knn" and rev["mi_nats"] == res["mi_nats"]


def test_choose_index_float_refusals():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, 2000)
    res = choose_baseline(lab, rng.standard_normal((2000, 16)), "index", "float")
    assert res["method"] is None and "16 dims" in res["reason"]
    res = choose_baseline(rng.integers(0, 1000, 2000), rng.standard_normal(2000), "index", "float")
    assert res["method"] is None and "rows per symbol" in res["reason"]


def test_choose_float_float_low_dim_uses_ksg_with_gaussian_reference():
    x, y = correlated_gaussians(30_000, 2, 0.5, seed=3)
    truth = -math.log(1 - 0.25)
    res = choose_baseline(x, y, "float", "float", max_knn_rows=10_000)
    assert res["method"] == "ksg" and res["n_rows"] == 10_000
    # KSG at 10k rows: sd ~0.01 (see above); Gaussian on 30k rows: sd 0.5*sqrt(2/30000) ~ 0.004.
    assert res["mi_nats"] == pytest.approx(truth, abs=0.05)
    assert res["gaussian_nats"] == pytest.approx(truth, abs=0.02)
    assert "Gaussian" in res["note"]


def test_choose_float_float_high_dim_uses_corrected_gaussian():
    d, rho, n = 6, 0.3, 5000
    x, y = correlated_gaussians(n, d, rho, seed=4)
    truth = -0.5 * d * math.log(1 - rho**2)
    res = choose_baseline(x, y, "float", "float")
    assert res["method"] == "gaussian"
    assert res["gaussian_bias_nats"] == pytest.approx(d * d / (2 * n), rel=0.1)
    # sd 0.3*sqrt(6/5000) ~ 0.01; the correction removes the 0.0036 nats of null bias.
    assert res["mi_nats"] == pytest.approx(truth, abs=0.045)
    assert res["mi_nats"] == pytest.approx(res["gaussian_raw_nats"] - res["gaussian_bias_nats"])
    assert "not a bound" in res["note"]


def test_choose_baseline_input_checks():
    rng = np.random.default_rng(0)
    res = choose_baseline(rng.standard_normal(20), rng.standard_normal(20), "float", "float")
    assert res["method"] is None and "rows" in res["reason"]
    with pytest.raises(ValueError, match="x_kind"):
        choose_baseline(np.zeros(100), np.zeros(100), "tokens", "float")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same number of rows"):
        choose_baseline(np.zeros(100), np.zeros(99), "float", "float")

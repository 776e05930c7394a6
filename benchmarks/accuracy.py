"""Accuracy of ``minecli.estimate_mi`` on tasks with a known answer.

    python benchmarks/accuracy.py                 # the full table, appended to benchmarks/RESULTS.md
    python benchmarks/accuracy.py --only gauss    # tasks whose name contains 'gauss'
    python benchmarks/accuracy.py --no-write      # print only

Every task draws 10,000 paired samples (the estimator splits them 70/10/20 into train, validation
and test) and compares the held-out estimate with the truth:
- correlated Gaussians, I = -d/2 log(1 - rho^2) per dimension pair (exact);
- index-index pairs drawn from a known joint table, I computed exactly from the table;
- an index-float mixture y = mu[label] + sigma * noise, I = H(Y) - H(Y|X) by Monte Carlo with the
  exact mixture density (standard error printed, far below the tolerance);
- independent pairs (truth 0).
Target: within 5% of the truth, or 0.03 nats when the truth is below 0.6, in under 20 s each.
"""
from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import _bench  # the benchmarks folder is on sys.path when a script in it runs

N = 10_000


def gaussian(d: int, mi: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """x, y in R^d with per-dimension correlation chosen so that I(X;Y) = mi nats."""
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((N, d))
    return x.astype(np.float32), y.astype(np.float32), mi


def table_pairs(vx: int, vy: int, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Token pairs from a Dirichlet-drawn joint table; the exact MI of the table."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(vx * vy, alpha)).reshape(vx, vy)
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    truth = float((p[nz] * np.log(p[nz] / (px @ py)[nz])).sum())
    cells = rng.choice(vx * vy, size=N, p=p.ravel())
    return cells // vy, cells % vy, truth


def mixture(vocab: int, dim: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels uniform over vocab, y = mu[label] + sigma * noise; I(label; y) by Monte Carlo."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((vocab, dim))
    lab = rng.integers(0, vocab, N)
    y = mu[lab] + sigma * rng.standard_normal((N, dim))
    # I = E[log p(y|l) - log p(y)], p(y) = mean_l N(y; mu_l, sigma^2 I); 200k Monte Carlo draws.
    m = 200_000
    lm = rng.integers(0, vocab, m)
    ym = mu[lm] + sigma * rng.standard_normal((m, dim))
    d2 = ((ym[:, None, :] - mu[None, :, :]) ** 2).sum(-1) / (2 * sigma**2)
    log_all = -d2
    log_own = log_all[np.arange(m), lm]
    log_mix = np.logaddexp.reduce(log_all, axis=1) - math.log(vocab)
    pmi = log_own - log_mix
    return lab, y.astype(np.float32), float(pmi.mean())


def independent_float(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Two independent 5-d Gaussians."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 5)).astype(np.float32), rng.standard_normal((N, 5)).astype(np.float32), 0.0


def independent_index(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Two independent token streams (vocab 32)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 32, N), rng.integers(0, 32, N), 0.0


TASKS: list[tuple[str, Callable[[int], tuple[np.ndarray, np.ndarray, float]]]] = [
    ("gauss d=1 I=0.1", lambda s: gaussian(1, 0.1, s)),
    ("gauss d=1 I=1.0", lambda s: gaussian(1, 1.0, s)),
    ("gauss d=5 I=0.5", lambda s: gaussian(5, 0.5, s)),
    ("gauss d=5 I=1.0", lambda s: gaussian(5, 1.0, s)),
    ("gauss d=5 I=2.0", lambda s: gaussian(5, 2.0, s)),
    ("gauss d=25 I=1.0", lambda s: gaussian(25, 1.0, s)),
    ("gauss d=25 I=3.0", lambda s: gaussian(25, 3.0, s)),
    ("table 16x16", lambda s: table_pairs(16, 16, 0.3, s)),
    ("table 64x32", lambda s: table_pairs(64, 32, 0.5, s)),
    ("mixture v=16 d=2", lambda s: mixture(16, 2, 0.5, s)),
    ("mixture v=64 d=8", lambda s: mixture(64, 8, 0.8, s)),
    ("independent float d=5", independent_float),
    ("independent index v=32", independent_index),
]


def tolerance(truth: float) -> float:
    """The target: 5% of the truth, or 0.03 nats below 0.6 nats."""
    return 0.03 if truth < 0.6 else 0.05 * truth


def main() -> None:
    """Run the tasks and print (and append) the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run tasks whose name contains this text")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--estimator", default="mine")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra estimate_mi option, YAML value (e.g. --set critic={bilinear_dim: 32})")
    args = ap.parse_args()
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}

    import torch

    import minecli

    torch.set_num_threads(1)
    rows = []
    header = "| task | truth | estimate | error | 95% CI | CI covers | within target | baseline | seconds |"
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    for name, make in TASKS:
        if args.only and args.only not in name:
            continue
        x, y, truth = make(args.seed)
        t0 = time.perf_counter()
        r = minecli.estimate_mi(x, y, estimator=args.estimator, seed=args.seed, progress=False, **extra)
        sec = time.perf_counter() - t0
        lo, hi = r.ci95_nats
        err = r.mi_nats - truth
        ok = abs(err) <= tolerance(truth)
        covers = lo <= truth <= hi
        base = r.baseline or {}
        base_txt = f"{base['method']} {base['mi_nats']:.3f}" if base.get("method") else "-"
        row = (f"| {name} | {truth:.3f} | {r.mi_nats:.3f} | {err:+.3f} ({100 * err / truth:+.1f}%) | "
               f"[{lo:.3f}, {hi:.3f}] | {'yes' if covers else 'no'} | {'yes' if ok else 'NO'} | {base_txt} | {sec:.1f} |"
               if truth > 0 else
               f"| {name} | 0 | {r.mi_nats:.3f} | {err:+.3f} | [{lo:.3f}, {hi:.3f}] | {'yes' if covers else 'no'} | "
               f"{'yes' if ok else 'NO'} | {base_txt} | {sec:.1f} |")
        rows.append(row)
        print(row, flush=True)
    if args.no_write or not rows:
        return
    cmd = "python benchmarks/accuracy.py " + " ".join(sys.argv[1:])
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        rev = "?"
    body = (f"Commit {rev}, estimator `{args.estimator}`, options {extra or 'default'}, 10,000 samples per task, "
            f"1 torch thread, Python {platform.python_version()}.\n\n{header}\n|---|---|---|---|---|---|---|---|---|\n"
            + "\n".join(rows))
    _bench.append_results("accuracy on tasks with known MI", cmd, body)

if __name__ == "__main__":
    main()

"""Sparse token tables: the table reference's two corrections for the size of the train split, side by side.

    python benchmarks/sparse_tables.py              # every task at seeds 0, 1, 2; written to benchmarks/RESULTS.md
    python benchmarks/sparse_tables.py --no-write   # print only

Token pairs of 10,000 samples whose joint table has far more cells than frames, each with its exact MI:
Dirichlet-drawn joint tables (128 x 64, and 512 x 512 at alpha 0.05), Dirichlet rows over a
Zipf-distributed x (rows flat, or centred on a Zipf marginal of y), a low-rank table (1,024 rows through
16 row profiles over 256 tokens) and a sticky Markov chain of tokens through a Dirichlet table. Each
runs ``estimate_mi`` with default options and reports, beside the estimate, the held-out bound and what
the halves' extrapolation alone would have given (2 I(n) - I(n/2) per fold from the fold's own terms in
``half_sample``, folds weighted by their test frames as the estimate's are), and which correction each
fold used. The selected critic can be the trained one in some folds: such a fold has no correction and
counts as its estimate.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

import _bench  # the benchmarks folder is on sys.path when a script in it runs
from accuracy import N, table_pairs


def _mi(joint: np.ndarray) -> float:
    """I(X;Y) of a joint table."""
    px, py = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (px @ py)[nz])).sum())


def _zipf(v: int, rng: np.random.Generator) -> np.ndarray:
    """A Zipf(1) distribution over v tokens in random order."""
    p = 1.0 / np.arange(1, v + 1)
    return p[rng.permutation(v)] / p.sum()


def _draw(joint: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """N independent pairs from a joint table."""
    cells = rng.choice(joint.size, size=N, p=joint.ravel() / joint.sum())
    return cells // joint.shape[1], cells % joint.shape[1]


def rows_table(vx: int, vy: int, seed: int, alpha: float = 0.0, centre: float = 0.0, profiles: int = 0):
    """Zipf x; each row Dirichlet(alpha) (flat), Dirichlet(centre * p_y) around a Zipf marginal of y, or one of
    ``profiles`` Dirichlet(alpha) rows shared by the x's of a random group (a low-rank table)."""
    rng = np.random.default_rng(seed)
    px = _zipf(vx, rng)
    if centre:
        rows = rng.dirichlet(centre * _zipf(vy, rng) + 1e-3, size=vx)
    elif profiles:
        rows = rng.dirichlet(np.full(vy, alpha), size=profiles)[rng.integers(0, profiles, vx)]
    else:
        rows = rng.dirichlet(np.full(vy, alpha), size=vx)
    joint = px[:, None] * rows
    x, y = _draw(joint, rng)
    return x, y, _mi(joint)


def sticky_table(vx: int, vy: int, alpha: float, stay: float, seed: int):
    """A Markov chain of Zipf tokens that repeats the last with probability ``stay``, through Dirichlet(alpha) rows."""
    rng = np.random.default_rng(seed)
    px = _zipf(vx, rng)
    rows = rng.dirichlet(np.full(vy, alpha), size=vx)
    fresh, repeat = rng.choice(vx, size=N, p=px), rng.random(N) < stay
    x = np.empty(N, dtype=np.int64)
    x[0] = fresh[0]
    for t in range(1, N):
        x[t] = x[t - 1] if repeat[t] else fresh[t]  # stationary marginal: px
    y = (rng.random(N)[:, None] > rows.cumsum(1)[x]).sum(1).clip(max=vy - 1)
    return x, y, _mi(px[:, None] * rows)


TASKS: list[tuple[str, Callable[[int], tuple]]] = [
    ("dirichlet table 128x64 a=0.5", lambda s: table_pairs(128, 64, 0.5, s)[:3]),
    ("dirichlet table 512x512 a=0.05", lambda s: table_pairs(512, 512, 0.05, s)[:3]),
    ("zipf x, flat rows 512x128 a=0.1", lambda s: rows_table(512, 128, s, alpha=0.1)),
    ("zipf x, rows around zipf y 256x256", lambda s: rows_table(256, 256, s, centre=20.0)),
    ("low rank 1024x256, 16 profiles", lambda s: rows_table(1024, 256, s, alpha=0.2, profiles=16)),
    ("sticky chain 128x32 stay=0.8", lambda s: sticky_table(128, 32, 0.5, 0.8, s)),
]


def halves_only(r) -> float:
    """The estimate had the halves' extrapolation alone corrected each fold (folds weighted by test frames)."""
    hs = r.half_sample or {}
    folds = hs.get("folds") or [hs]
    values, weights = [], []
    for f, fold in zip(folds, r.folds or [{"mi_nats": r.mi_nats}]):
        weights.append(fold.get("n_test_frames", 1))
        if not f or not f.get("half_sample_bounds_nats"):
            values.append(fold["mi_nats"] if not f else f["held_out_bound_nats"])
            continue
        held = f["held_out_bound_nats"]
        parts = [(held - b) * s / (1 - s) for b, s in zip(f["half_sample_bounds_nats"], f["half_sample_shares"])]
        values.append(held + sum(parts) / len(parts))
    return float(np.average(values, weights=weights))


def main() -> None:
    """Run the tasks over the seeds and print (and record) the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-write", action="store_true", help="do not write to benchmarks/RESULTS.md")
    args = ap.parse_args()
    import warnings

    import torch

    import minecli

    torch.set_num_threads(1)
    header = ("| task | seed | truth | estimate | error | 95% CI | held-out bound | halves alone | error | "
              "corrections used | seconds |")
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    print(header)
    print(rule)
    rows = []
    for name, make in TASKS:
        for seed in (int(s) for s in args.seeds.split(",")):
            x, y, truth = make(seed)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the sticky chain warns of its block split, as it should
                r = minecli.estimate_mi(x, y, seed=seed, progress=False, baseline=False)
            sec = time.perf_counter() - t0
            hs = r.half_sample or {}
            used = [(f or {}).get("correction") or ("halves" if (f or {}).get("half_sample_bounds_nats") else "none")
                    for f in (hs.get("folds") or [hs])]
            counts = ", ".join(f"{used.count(k)} {k}" for k in ("posterior", "half-sample", "halves", "none") if k in used)
            alone = halves_only(r)
            held = "-" if r.held_out_bound_nats is None else f"{r.held_out_bound_nats:.3f}"
            lo, hi = r.ci95_nats
            row = (f"| {name} | {seed} | {truth:.3f} | {r.mi_nats:.3f} | {100 * (r.mi_nats / truth - 1):+.1f}% | "
                   f"[{lo:.3f}, {hi:.3f}] | {held} | {alone:.3f} | {100 * (alone / truth - 1):+.1f}% | {counts} | {sec:.1f} |")
            rows.append(row)
            print(row, flush=True)
    if args.no_write:
        return
    body = ("10,000 samples per task, seeds " + args.seeds + " (data and estimator), default options, 1 torch thread "
            "(module docstring).\n\n" + header + "\n" + rule + "\n" + "\n".join(rows))
    _bench.write_section("sparse token tables: posterior and half-sample corrections",
                         _bench.command_line("sparse_tables.py", sys.argv[1:]), body)


if __name__ == "__main__":
    main()

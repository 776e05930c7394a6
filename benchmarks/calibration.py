"""Calibration of minecli's uncertainty: does the 95% interval cover the truth, does "p < 0.05" hold at 5%?

    python benchmarks/calibration.py                    # both parts, written to benchmarks/RESULTS.md
    python benchmarks/calibration.py --seeds 0 --draws 5 --no-write   # a quick look

Coverage: every task of benchmarks/accuracy.py (10,000 samples, known MI) at the given seeds, run with
``estimate_mi``'s defaults; the reported interval (``ci95_nats``) and the cheap test-noise interval
(``ci95_test_noise_nats``) are checked against the truth, and their mean widths are reported beside.

False positives: independent streams that are each autocorrelated like speech features, AR(1) with a
correlation length of 30 frames plus a per-utterance offset (sd 0.5), 4 dims each, 40 utterances of
250 frames; given as per-utterance lists and as the same frames concatenated into one array. The
truth is 0, so "p < 0.05" should happen in at most 5% of draws, and the estimate should stay near 0.
The null draws train for --null-steps steps (fewer than the default, to keep the run short; the
critic has nothing to find, and the p-value's validity does not depend on how well it is trained).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

import _bench  # the benchmarks folder is on sys.path when a script in it runs
from accuracy import TASKS
from minecli.testing import ar1_frames as ar1


def widening_terms(terms: dict) -> list[str]:
    """The terms that can widen an interval, in order: a cross-fit's parts' terms in place of "folds"."""
    keys = [k for k in terms if k != "folds"]
    for part in terms.get("folds", []):
        keys += [k for k in part if k not in keys]
    return [k for k in keys if k != "test_noise"]


def null_pair(seed: int, n_utts: int = 40, frames: int = 250, d: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Independent x and y utterances, each AR(1) over ~30 frames plus a per-utterance offset."""
    rng = np.random.default_rng(10_000 + seed)

    def stream() -> list[np.ndarray]:
        return [ar1(frames, 30, rng, d) + 0.5 * rng.standard_normal(d).astype(np.float32) for _ in range(n_utts)]

    return stream(), stream()


def coverage(seeds: list[int], only: str | None) -> tuple[str, str]:
    """The coverage table and its summary line."""
    import minecli

    rows, stats = [], []
    for name, make in TASKS:
        if only and only not in name:
            continue
        for seed in seeds:
            x, y, truth, _ = make(seed)
            t0 = time.perf_counter()
            r = minecli.estimate_mi(x, y, seed=seed, progress=False)
            sec = time.perf_counter() - t0
            lo, hi = r.ci95_nats
            nlo, nhi = r.ci95_test_noise_nats
            cov, ncov = lo <= truth <= hi, nlo <= truth <= nhi
            stats.append((cov, ncov, hi - lo, nhi - nlo))
            row = [name, seed, f"{truth:.3f}", f"{r.mi_nats:.3f}", f"[{lo:.3f}, {hi:.3f}]", "yes" if cov else "NO",
                   f"{hi - lo:.3f}", f"[{nlo:.3f}, {nhi:.3f}]", "yes" if ncov else "no", f"{nhi - nlo:.3f}",
                   ", ".join(widening_terms(r.ci_terms)) or "-", f"{sec:.1f}"]
            rows.append(row)
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
    n = len(stats)
    a = np.asarray(stats, dtype=float)
    summary = (f"Coverage of the 95% interval: {int(a[:, 0].sum())} of {n} runs ({a[:, 0].mean():.0%}), mean width "
               f"{a[:, 2].mean():.3f} nats (median {np.median(a[:, 2]):.3f}); the test-noise interval alone: "
               f"{int(a[:, 1].sum())} of {n} ({a[:, 1].mean():.0%}), mean width {a[:, 3].mean():.3f} nats "
               f"(median {np.median(a[:, 3]):.3f}).")
    head = ["task", "seed", "truth", "estimate", "95% CI", "covers", "width", "test-noise CI", "covers", "width",
            "widened by", "seconds"]
    return summary, _bench.md_table(head, rows)


def false_positives(draws: int, steps: int) -> tuple[str, str]:
    """The null table and its summary line."""
    import minecli

    rows, hits, estimates, ok_array = [], {"lists": 0, "array": 0}, {"lists": [], "array": []}, 0
    for seed in range(draws):
        xs, ys = null_pair(seed)
        for form, (x, y) in (("lists", (xs, ys)), ("array", (np.concatenate(xs), np.concatenate(ys)))):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the array form warns of its block split, as it should
                r = minecli.estimate_mi(x, y, seed=seed, progress=False, steps=steps)
            sec = time.perf_counter() - t0
            hit = r.p_value is not None and r.p_value < 0.05
            hits[form] += hit
            estimates[form].append(r.mi_nats)
            if form == "array":
                ok_array += r.mi_nats < 0.05 and not hit
            lo, hi = r.ci95_nats
            row = [seed, form, f"{r.mi_nats:.4f}", f"[{lo:.4f}, {hi:.4f}]", r.p_value_text,
                   f"{r.n_permutations} x {r.permutation_unit}", r.ci_method, r.correlation_length_frames,
                   "-" if not r.baseline or r.baseline.get("mi_nats") is None else f"{r.baseline['mi_nats']:.3f}",
                   f"{sec:.1f}"]
            rows.append(row)
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
    summary = (f"p < 0.05 on independent autocorrelated streams: {hits['lists']} of {draws} draws as lists "
               f"({hits['lists'] / draws:.0%}), {hits['array']} of {draws} as one array ({hits['array'] / draws:.0%}); "
               f"largest estimate {max(estimates['lists']):.4f} nats (lists), {max(estimates['array']):.4f} nats "
               f"(array); one array under 0.05 nats with p > 0.05 in {ok_array} of {draws} draws.")
    head = ["draw", "input", "estimate", "95% CI", "p", "permutations", "CI by", "corr. length", "baseline",
            "seconds"]
    return summary, _bench.md_table(head, rows)


def main() -> None:
    """Run both parts and print (and record) the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1", help="seeds of the coverage tasks, comma-separated")
    ap.add_argument("--only", help="coverage tasks whose name contains this text")
    ap.add_argument("--draws", type=int, default=20, help="independent autocorrelated draws")
    ap.add_argument("--null-steps", type=int, default=600, help="training steps of the null draws")
    ap.add_argument("--skip-coverage", action="store_true")
    ap.add_argument("--skip-null", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not write to benchmarks/RESULTS.md")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    parts = []
    if not args.skip_coverage:
        summary, table = coverage([int(s) for s in args.seeds.split(",")], args.only)
        print(summary)
        parts.append(f"Interval coverage over the accuracy tasks (10,000 samples each, seeds {args.seeds}, "
                     f"defaults of estimate_mi).\n\n{summary}\n\n{table}")
    if not args.skip_null:
        summary, table = false_positives(args.draws, args.null_steps)
        print(summary)
        parts.append(f"False positives on independent autocorrelated streams (AR(1), correlation length 30 frames, "
                     f"per-utterance offsets, 40 utterances of 250 frames, 4 dims; {args.null_steps} training "
                     f"steps, 99 permutations).\n\n{summary}\n\n{table}")
    total = time.perf_counter() - t0
    print(f"{total:.0f} s")
    if args.no_write or not parts:
        return
    body = f"1 torch thread; {total / 60:.1f} minutes in all.\n\n" + "\n\n".join(parts)
    _bench.write_section("calibration of intervals and p-values", _bench.command_line("calibration.py", sys.argv[1:]), body)


if __name__ == "__main__":
    main()

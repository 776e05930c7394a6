"""Peak memory of a minecli estimate as the corpus grows (1x, 10x, 100x frames).

    python benchmarks/memory.py                        # about 2 minutes, peak about 19 GB at 100x
    python benchmarks/memory.py --scales 1 10 --dim 513

Each scale runs in its own process, so its peak RSS (``getrusage`` ru_maxrss) is its own. The
corpus is benchmarks/synthetic.py's model generated in memory: the base is 200 utterances of 5 s
(100,000 frames at 100 Hz), tokens repeated x2 to 100 Hz; scale s has 200 s utterances. The y
width defaults to 32 instead of 513 so that 100x (10 M frames) fits in memory: 10 M x 513 float32
would be 20 GB of features alone. The run is ``minecli.estimate_mi`` on per-utterance lists (split
70/10/20 by utterance, standard normalisation, the benchmark model size, a short fixed training,
64 negatives per test frame, a 10-resample bootstrap). Reported: the feature bytes the caller
holds (x int64 + y float32), the process RSS before the data exist, after generating them, and the
peak; ``(peak - before) / feature bytes`` shows whether cost grows faster than the data.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402
import synthetic  # noqa: E402


def _rss_mb() -> float:
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(scale: int, dim: int, utterances: int, steps: int) -> dict:
    """Generate the scaled corpus in memory, run one estimate, return the measurements."""
    import numpy as np
    import torch

    import minecli

    torch.set_num_threads(1)
    before = _rss_mb()
    truth = synthetic.cached_truth()
    spec = synthetic.CorpusSpec(train_utts=utterances * scale, y_dim=dim)
    t0 = time.perf_counter()
    toks, ys = synthetic.make_split(spec, "train", spec.train_utts, truth.sigma)
    xs = [np.repeat(t, spec.repeat) for t in toks]
    del toks
    gen_s = time.perf_counter() - t0
    data_bytes = sum(x.nbytes + y.nbytes for x, y in zip(xs, ys))
    after_data = _rss_mb()
    t0 = time.perf_counter()
    res = minecli.estimate_mi(xs, ys, x_kind="index", x_vocab_size=1024, hidden_dims=_bench.MODEL["hidden_dims"],
                              head_x={"name": "embedding", "params": {"dim": _bench.MODEL["x_embedding_dim"]}},
                              head_y={"name": "projection", "params": {"dim": _bench.MODEL["y_proj_dim"]}},
                              n_negatives=4, eval_negatives=64, baseline=False, steps=steps, batch_size=64,
                              segment_length=50, lr=3e-3, validate_every=max(1, steps // 2), bootstrap=10,
                              null_permutations=9, progress=False, threads=1)
    return {"scale": scale, "frames": int(sum(len(x) for x in xs)), "dim": dim, "data_mb": data_bytes / 2**20,
            "before_mb": before, "after_data_mb": after_data, "peak_mb": _bench.peak_rss_mb(),
            "gen_s": gen_s, "run_s": time.perf_counter() - t0, "mi_nats": res.mi_nats,
            "test_frames": res.n_test_frames}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100], help="corpus sizes, in base corpora")
    ap.add_argument("--dim", type=int, default=32, help="y feature width (at least 16)")
    ap.add_argument("--utterances", type=int, default=200, help="5 s utterances in the base corpus")
    ap.add_argument("--steps", type=int, default=200, help="training steps of each run")
    ap.add_argument("--no-save", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dim < synthetic.LATENT_DIM:
        ap.error(f"--dim must be at least {synthetic.LATENT_DIM}")
    if args.child is not None:
        print(json.dumps(child(args.child, args.dim, args.utterances, args.steps)))
        return 0

    synthetic.cached_truth()
    load_before = _bench.load_average()
    rows = []
    for scale in args.scales:
        print(f"scale {scale}x ...", file=sys.stderr)
        run = subprocess.run([sys.executable, __file__, "--child", str(scale), "--dim", str(args.dim),
                              "--utterances", str(args.utterances), "--steps", str(args.steps)],
                             capture_output=True, text=True)
        lines = run.stdout.strip().splitlines()
        if run.returncode or not lines:
            tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"scale {scale}x failed: {tail}")
        rows.append(json.loads(lines[-1]))
    base = rows[0]
    table = _bench.md_table(
        ["scale", "frames", "y dim", "feature MB", "RSS before MB", "RSS with data MB", "peak RSS MB",
         "(peak - before) / features", "peak growth vs 1st row", "feature growth", "run s"],
        [[f"{r['scale']}x", f"{r['frames']:,}", r["dim"], f"{r['data_mb']:,.0f}", f"{r['before_mb']:,.0f}",
          f"{r['after_data_mb']:,.0f}", f"{r['peak_mb']:,.0f}", f"{(r['peak_mb'] - r['before_mb']) / r['data_mb']:.1f}",
          f"{(r['peak_mb'] - r['before_mb']) / (base['peak_mb'] - base['before_mb']):.1f}x",
          f"{r['data_mb'] / base['data_mb']:.0f}x", f"{r['run_s']:.1f}"] for r in rows])
    body = (f"minecli.estimate_mi on per-utterance lists of the synthetic model, y width {args.dim}, {args.steps} "
            f"training steps, 64 negatives per test frame. Load average before/after: {load_before} / "
            f"{_bench.load_average()}.\n\n{table}\n")
    _bench.publish("peak memory as the corpus grows", "memory.py", argv, body, save=not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())

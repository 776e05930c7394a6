"""Side by side, like for like: the original pipeline (DaiDongyang/mi_estimate) and minecli on one corpus.

    python benchmarks/vs_seed.py --seed-repo /path/to/mi_estimate --seed-python /seed-venv/bin/python
    python benchmarks/vs_seed.py --seed-repo PATH --threads 1 --rounds 3 --skip-best      # throughput only

The corpus is benchmarks/synthetic.py's (1,024 Zipf tokens at 50 Hz repeated x2 against 513-dim
frames at 100 Hz, truth 2.147 nats per frame). The original runs in its own checkout and interpreter
(``--seed-python``: one with its requirements, torch, numpy, pandas, tqdm, pyyaml; give it the same
torch as minecli's): benchmarks/seed_driver.py builds its loaders and model from a config and times
its own ``train_batch``. What is held equal:

- the model: x embedding 64, y projection 64 of the flattened 3-frame y window, critic [64, 32], no
  batch norm, no dropout; context 3 on both sides; 16 segments x 200 frames; one negative; lr 1e-3;
- threads: each side runs with the same number of torch threads (``--threads``, one row per count);
  the original keeps its 2 data-loader worker processes (``--seed-workers``), which is its design;
- the timed window: training steps and the wait for their batches only, after the same warm-up, never
  a validation, a checkpoint or the restart of the original's loader at each epoch;
- the order: ``--rounds`` alternated rounds (original first, then minecli first, ...); the median of
  each side's rounds is reported, with the load average.

minecli's rows use its default training precision (bf16 where the CPU has fast bf16 units) and, for
comparison, float32. Accuracy is shown at an equal step budget (``--budget`` steps of the like-for-like
setup for both, no closed-form reference for minecli: both numbers come from trained critics and
bound the same 3-frame-window information, so higher is better) and at each side's best: the original
with its shipped config.yaml's training settings (batch 64, dropout 0.2, ``--best-steps`` steps) and
minecli as ``minecli run`` runs with its defaults (context 1, per-frame estimate against the truth).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402
import synthetic  # noqa: E402

DRIVER = Path(__file__).resolve().parent / "seed_driver.py"
#: the like-for-like model (the original's README example for an index x and a float y, at its hidden sizes)
LIKE = {"x_embedding_dim": 64, "y_proj_dim": 64, "hidden_dims": [64, 32]}
CONTEXT, SEGMENTS, FRAMES, LR = 3, 16, 200, 1e-3


def seed_config(corpus: Path, path: Path, *, workers: int, batch: int = SEGMENTS, dropout: float = 0.0) -> Path:
    """The original pipeline's config for the synthetic corpus with the like-for-like model."""
    doc = {
        "data": {"train_csv": str(corpus / "train.csv"), "valid_csv": str(corpus / "valid.csv"),
                 "test_csv": str(corpus / "test.csv"), "features_dir": str(corpus), "segment_length": FRAMES,
                 "normalization": "standard", "context_frame_numbers": CONTEXT, "x_repeat": 2, "y_repeat": 1,
                 "max_length_diff": 5},
        "model": {"x_type": "index", "y_type": "float", "y_dim": 513, "x_vocab_size": 1024,
                  "x_embedding_dim": LIKE["x_embedding_dim"], "y_proj_dim": LIKE["y_proj_dim"],
                  "hidden_dims": LIKE["hidden_dims"], "activation": "relu", "batch_norm": False,
                  "dropout": dropout, "bias_correction_method": "none"},
        "training": {"epochs": 1, "batch_size": batch, "lr": LR, "device": "cpu", "num_workers": workers, "seed": 42},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_seed(args: argparse.Namespace, config: Path, threads: int, steps: int) -> dict[str, Any]:
    """One run of the original through seed_driver.py; its RESULT line as a dict."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([args.seed_python, str(DRIVER), str(config), str(threads), str(steps), str(args.warmup)],
                          cwd=args.seed_repo, env=env, capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"the original pipeline failed (exit {proc.returncode}): {tail[0]}")
    out = json.loads(line[len("RESULT "):])
    out["pairs_s"] = out["pairs"] / out["timed_s"]
    return out


def like_trainer(loaded: _bench.Loaded, threads: int, steps: int, precision: str | None, **training: Any) -> Any:
    """minecli's Trainer on the like-for-like setup (no closed-form reference: only trained critics compare)."""
    trainer = _bench.make_trainer(loaded, context=CONTEXT, critic={"reference": False}, threads=threads, steps=steps,
                                  batch_size=SEGMENTS, segment_length=FRAMES, lr=LR, **training,
                                  **({"precision": precision} if precision else {}))
    trainer.est_cfg = replace(trainer.est_cfg, n_negatives=1)
    return trainer


def run_minecli(loaded: _bench.Loaded, args: argparse.Namespace, threads: int, precision: str | None) -> dict[str, Any]:
    """A timed minecli run on the like-for-like setup, warm-up steps excluded as for the original."""
    trainer = like_trainer(loaded, threads, args.warmup, precision, validate_every=args.warmup)
    trainer.fit()  # the warm-up: the same number of untimed steps as the original's
    trainer = like_trainer(loaded, threads, args.steps, precision, validate_every=args.steps)
    fit = _bench.timed_fit(trainer)
    timed = fit.wall - fit.valid_seconds
    return {"pairs_s": args.steps * trainer.pairs_per_step / timed, "timed_s": timed,
            "precision": getattr(trainer, "precision", "float32")}


def has_precision() -> bool:
    """True when this minecli's training config has a precision setting."""
    from minecli.core.settings import TrainConfig

    return "precision" in TrainConfig.__dataclass_fields__


def minecli_defaults(corpus: Path, work: Path) -> dict[str, Any]:
    """``minecli run`` with every default (context 1, default critic and steps) on the corpus; its results.json."""
    doc = {"data": {"train_csv": str(corpus / "train.csv"), "valid_csv": str(corpus / "valid.csv"),
                    "test_csv": str(corpus / "test.csv"), "features_dir": str(corpus)},
           "x": {"extractor": "precomputed", "params": {"kind": "index", "vocab_size": 1024, "frame_rate": 50}},
           "y": {"extractor": "precomputed", "params": {"kind": "float", "dim": 513, "frame_rate": 100}},
           "output": {"dir": str(work / "defaults"), "resume": False}}
    cfg = work / "minecli-defaults.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "minecli", "run", str(cfg)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"minecli run failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads((work / "defaults" / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-repo", type=Path, required=True, help="checkout of DaiDongyang/mi_estimate")
    ap.add_argument("--seed-python", default=sys.executable, help="interpreter with the original's requirements")
    ap.add_argument("--seed-workers", type=int, default=2, help="the original's DataLoader workers (its README: 16, "
                    "slower on 2 cores)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads per side, one row each")
    ap.add_argument("--rounds", type=int, default=2, help="alternated rounds per thread count")
    ap.add_argument("--steps", type=int, default=240, help="timed steps per throughput run")
    ap.add_argument("--warmup", type=int, default=12, help="untimed steps before the timed ones")
    ap.add_argument("--budget", type=int, default=600, help="steps of the equal-budget accuracy runs")
    ap.add_argument("--best-steps", type=int, default=600, help="steps of the original's run at its shipped settings")
    ap.add_argument("--skip-best", action="store_true", help="leave out the at-best accuracy runs")
    ap.add_argument("--corpus", type=Path, default=synthetic.DEFAULT_DIR / "corpus", help="corpus folder")
    ap.add_argument("--no-save", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args(argv)
    if not (args.seed_repo / "train.py").exists():
        ap.error(f"--seed-repo {args.seed_repo} has no train.py; give a checkout of DaiDongyang/mi_estimate")
    args.seed_repo = args.seed_repo.resolve()

    truth = synthetic.cached_truth()
    synthetic.write_corpus(synthetic.CorpusSpec(), args.corpus, truth.sigma)
    work = synthetic.DEFAULT_DIR / "vs_seed"
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vs-seed-", dir=work))
    config = _bench.minecli_config(args.corpus, work, steps=args.budget, batch_size=SEGMENTS, segment_length=FRAMES,
                                   n_negatives=1, lr=LR, validate_every=args.budget, threads=1, model=LIKE)
    loaded = _bench.load(config)
    precisions: list[str | None] = ["auto", "float32"] if has_precision() else [None]
    seed_cfg = seed_config(args.corpus, tmp / "seed.yaml", workers=args.seed_workers)

    rows = []
    for threads in args.threads:
        seeds: list[float] = []
        mine: dict[str | None, list[float]] = {p: [] for p in precisions}
        used: dict[str | None, str] = {}
        for r in range(args.rounds):
            order = ["seed", "minecli"] if r % 2 == 0 else ["minecli", "seed"]
            for side in order:
                print(f"{threads} thread(s), round {r + 1}: {side} ...", file=sys.stderr)
                if side == "seed":
                    seeds.append(run_seed(args, seed_cfg, threads, args.steps + args.warmup)["pairs_s"])
                else:
                    for p in precisions:
                        res = run_minecli(loaded, args, threads, p)
                        mine[p].append(res["pairs_s"])
                        used[p] = str(res["precision"])
        seed_med = statistics.median(seeds)
        rows.append(["original", threads, f"{args.seed_workers} loader workers", " / ".join(f"{v:,.0f}" for v in seeds),
                     f"{seed_med:,.0f}", "1.0x"])
        for p in precisions:
            med = statistics.median(mine[p])
            rows.append(["minecli", threads, f"precision {p or 'float32'} ({used[p]})",
                         " / ".join(f"{v:,.0f}" for v in mine[p]), f"{med:,.0f}", f"{med / seed_med:.1f}x"])
    table = _bench.md_table(["pipeline", "torch threads", "setting", "pairs/s per round", "median pairs/s",
                             "vs original"], rows)

    print(f"equal budget: {args.budget} steps each ...", file=sys.stderr)
    acc_rows = []
    seed_eq = run_seed(args, seed_cfg, 1, args.budget)
    acc_rows.append(["original", f"like for like, {args.budget} steps", f"{seed_eq['valid']:.3f}", f"{seed_eq['test']:.3f}",
                     "mean of per-batch DV bounds, one shuffled negative"])
    trainer = like_trainer(loaded, 1, args.budget, None, validate_every=max(1, args.budget // 6))
    trainer.fit()
    test = trainer.estimate()["mi_nats"]
    acc_rows.append(["minecli", f"like for like, {args.budget} steps, default precision", f"{trainer.best_value:.3f}",
                     f"{test:.3f}", "DV bound of the best-validated state, 64 negatives per test frame"])
    if not args.skip_best:
        print(f"at best: the original at its shipped settings, {args.best_steps} steps ...", file=sys.stderr)
        best_cfg = seed_config(args.corpus, tmp / "seed-best.yaml", workers=args.seed_workers, batch=64, dropout=0.2)
        seed_best = run_seed(args, best_cfg, 1, args.best_steps)
        acc_rows.append(["original", f"shipped settings (batch 64, dropout 0.2), {args.best_steps} steps",
                         f"{seed_best['valid']:.3f}", f"{seed_best['test']:.3f}", "3-frame windows"])
        print("at best: minecli run with its defaults ...", file=sys.stderr)
        res = minecli_defaults(args.corpus, work)
        lo, hi = res["ci95_nats"]
        acc_rows.append(["minecli", "`minecli run` defaults (context 1)", "", f"{res['mi_nats']:.3f} [{lo:.3f}, {hi:.3f}]",
                         f"per frame, truth {truth.mi_nats:.3f}: {(res['mi_nats'] - truth.mi_nats) / truth.mi_nats:+.1%}; "
                         f"{res.get('critic', '')}"[:160]])
    acc = _bench.md_table(["pipeline", "run", "valid nats", "test nats", "what the number is"], acc_rows)
    body = (f"Like for like: x embedding {LIKE['x_embedding_dim']}, y projection {LIKE['y_proj_dim']} of the flattened "
            f"{CONTEXT}-frame window, critic {LIKE['hidden_dims']}, context {CONTEXT}, {SEGMENTS} segments x {FRAMES} "
            f"frames, one negative, lr {LR}; {args.steps} timed steps after {args.warmup} warm-up steps; loader "
            f"restarts and validation outside the timed window; {args.rounds} alternated rounds; same torch "
            f"({_torch_version()}) on both sides. Load average at the end: {_bench.load_average()}.\n\n{table}\n\n"
            f"Accuracy (truth {truth.mi_nats:.3f} +- {truth.stderr_nats:.3f} nats per frame; a 3-frame window carries "
            f"at least as much):\n\n{acc}\n")
    _bench.publish("side by side with the original pipeline (synthetic corpus)", "vs_seed.py", argv, body,
                   save=not args.no_save)
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())

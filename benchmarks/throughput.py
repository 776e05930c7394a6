"""Training throughput and time to an accurate estimate of minecli on the synthetic corpus.

    python benchmarks/throughput.py                     # 1-3 minutes on 2 cores
    python benchmarks/throughput.py --steps 12000 --threads 1 2
    python benchmarks/throughput.py --no-accuracy --processes 1 2 --no-save   # throughput rows only
    python benchmarks/throughput.py --precisions bf16 --prefetch on --seeds 0

The corpus is benchmarks/synthetic.py's (1024 tokens at 50 Hz vs 513-dim frames at 100 Hz, true
MI 2.147 nats per frame). It is read through the same code as ``minecli run`` with a CSV config
(prepare, align, normalise), then trained with the run's Trainer at the original pipeline's model
size (x embedding 32, y projection 32, critic hidden [64, 32]). Reported:

- throughput: frame pairs per second and steps per second over short runs with 1 and 2 torch
  threads, float32 and bf16 steps, and with and without the next batch prepared in a background
  thread (validation time excluded), and scored pairs per second (each pair plus its K negatives);
- the same short run in 1 process and under torchrun in 2 gloo processes of one thread each
  (benchmarks/throughput_ranks.py), at the same global batch: each rank draws half the segments;
- accuracy: a longer run validating every --validate-every steps; the wall time (loading included)
  until the validation estimate first comes within 5% of the truth, and the final test estimate;
- the critic's multiply-adds per frame pair against the measured single-thread matmul rate, and
  the pairs per second that rate would allow.

The table goes to stdout and is appended to benchmarks/RESULTS.md unless --no-save.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402
import synthetic  # noqa: E402


def throughput_row(loaded: _bench.Loaded, steps: int, threads: int, precision: str = "float32",
                   prefetch: bool = False) -> dict:
    """A short run: pairs and steps per second, validation excluded."""
    import torch

    # reference off: these rows time training steps, and the closed-form fit is not one
    trainer = _bench.make_trainer(loaded, steps=steps, validate_every=steps, threads=threads,
                                  precision=precision, prefetch=prefetch, critic={"reference": False})
    fit = _bench.timed_fit(trainer)
    train_s = fit.wall - fit.valid_seconds
    k = trainer.est_cfg.n_negatives
    pairs = steps * trainer.pairs_per_step
    return {"threads": torch.get_num_threads(), "precision": trainer.precision, "prefetch": "yes" if prefetch else "no",
            "steps": steps, "batch": f"{trainer.cfg.batch_size}x"
            f"{trainer.cfg.segment_length}", "k": k, "train_s": train_s, "pairs_s": pairs / train_s,
            "steps_s": steps / train_s, "scored_s": pairs * (1 + k) / train_s}


def process_row(loaded: _bench.Loaded, config: Path, steps: int, processes: int) -> dict:
    """The short run at the config's global batch in `processes` processes of one thread (torchrun for more
    than one), validation excluded."""
    batch = loaded.prep.cfg.training.batch_size
    if processes == 1:
        trainer = _bench.make_trainer(loaded, steps=steps, validate_every=steps, threads=1,
                                      critic={"reference": False})
        fit = _bench.timed_fit(trainer)
        timing = {"train_s": fit.wall - fit.valid_seconds, "pairs_per_step": trainer.pairs_per_step}
    else:
        if batch % processes:
            raise SystemExit(f"--batch-size {batch} does not split over {processes} processes; use a multiple")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   str(Path(__file__).resolve().parent / "throughput_ranks.py"), "--config", str(config),
                   "--steps", str(steps), "--batch-size", str(batch // processes), "--out", str(out)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not out.exists():
                raise SystemExit(f"torchrun with {processes} processes failed: {proc.stderr[-2000:]}")
            timing = json.loads(out.read_text())
    pairs = steps * timing["pairs_per_step"]
    return {"processes": processes, "per_process": f"{batch // processes}x{loaded.prep.cfg.pairing.segment_length}",
            "global": f"{batch}x{loaded.prep.cfg.pairing.segment_length}", "steps": steps,
            "train_s": timing["train_s"], "pairs_s": pairs / timing["train_s"], "steps_s": steps / timing["train_s"]}


def _estimate_from(trainer: Any) -> str:
    """Which critic gave the test estimate: the trained one, or the reference with its validation value."""
    rep = trainer.reference_report
    if rep is None:
        return "trained critic"
    if rep["selected"]:
        return f"{rep['kind']} reference (valid {rep['valid_nats']:.3f})"
    return f"trained critic ({rep['kind']} reference valid {rep['valid_nats']:.3f})"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=synthetic.DEFAULT_DIR / "corpus", help="corpus folder")
    ap.add_argument("--steps", type=int, default=3000, help="steps of each accuracy run")
    ap.add_argument("--weight-decay", type=float, default=_bench.ACCURACY_WEIGHT_DECAY,
                    help="AdamW weight decay of the accuracy runs (shrinks the embeddings of rare tokens)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one accuracy run per training seed")
    ap.add_argument("--throughput-steps", type=int, default=300, help="steps of each throughput run")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                    help="process counts to time (one thread each; torchrun with gloo for more than one)")
    ap.add_argument("--no-accuracy", action="store_true", help="time the throughput rows only")
    ap.add_argument("--precisions", nargs="+", choices=["float32", "bf16"], default=["float32", "bf16"],
                    help="training.precision of the throughput runs")
    ap.add_argument("--prefetch", choices=["off", "on", "both"], default="both",
                    help="throughput runs without and/or with the next batch prepared in a background thread")
    ap.add_argument("--batch-size", type=int, default=64, help="segments per step")
    ap.add_argument("--segment-length", type=int, default=50, help="frames per segment")
    ap.add_argument("--negatives", type=int, default=4, help="marginal samples per pair in training")
    ap.add_argument("--lr", type=float, default=3e-3, help="learning rate (cosine schedule)")
    ap.add_argument("--validate-every", type=int, default=250, help="validation interval of the accuracy run")
    ap.add_argument("--no-save", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args(argv)

    truth = synthetic.cached_truth()
    synthetic.write_corpus(synthetic.CorpusSpec(), args.corpus, truth.sigma)
    work = synthetic.DEFAULT_DIR / "throughput"
    config = _bench.minecli_config(args.corpus, work, steps=args.steps, batch_size=args.batch_size,
                                   segment_length=args.segment_length, n_negatives=args.negatives, lr=args.lr,
                                   validate_every=args.validate_every, threads=1)
    load_before = _bench.load_average()
    loaded = _bench.load(config)
    print(f"loaded the corpus in {loaded.seconds:.1f} s", file=sys.stderr)

    rows = []
    prefetch = {"off": [False], "on": [True], "both": [False, True]}[args.prefetch]
    for precision in args.precisions:
        for threads in args.threads:
            for ahead in prefetch:
                print(f"throughput: {precision}, {threads} thread(s), prefetch {'on' if ahead else 'off'} ...",
                      file=sys.stderr)
                rows.append(throughput_row(loaded, args.throughput_steps, threads, precision, ahead))
    proc_rows = []
    for processes in args.processes:
        print(f"throughput in {processes} process(es) of one thread ...", file=sys.stderr)
        proc_rows.append(process_row(loaded, config, args.throughput_steps, processes))

    tol = 0.05 * truth.mi_nats
    acc_rows, curves = [], []
    for seed in [] if args.no_accuracy else args.seeds:
        print(f"accuracy run, seed {seed}: {args.steps} steps ...", file=sys.stderr)
        trainer = _bench.make_trainer(loaded, threads=1, seed=seed, weight_decay=args.weight_decay,
                                      critic=_bench.ACCURACY_CRITIC)
        fit = _bench.timed_fit(trainer)
        test = trainer.estimate()["mi_nats"]
        hit = next(((s, t) for s, t, v in fit.points if abs(v - truth.mi_nats) <= tol), None)
        curves.append(f"seed {seed}: " + ", ".join(f"{s}: {v:.3f}" for s, _, v in fit.points))
        acc_rows.append([seed, f"{truth.mi_nats:.3f} +- {truth.stderr_nats:.3f}", trainer.step, f"{loaded.seconds:.1f}",
                         f"{fit.wall:.1f}", f"{hit[0]}, {hit[1] + loaded.seconds:.1f}" if hit else "not reached",
                         f"{trainer.best_value:.3f}", f"{test:.3f}", f"{(test - truth.mi_nats) / truth.mi_nats:+.1%}",
                         "yes" if abs(test - truth.mi_nats) <= tol else "no", _estimate_from(trainer)])
    load_after = _bench.load_average()

    plain = _bench.make_trainer(loaded, threads=1)  # the throughput runs' model (config defaults)
    macs = _bench.critic_macs(plain.model, plain.est_cfg.n_negatives)
    gf_square = _bench.matmul_gflops(1024, 1024, 1024)
    gf_critic = _bench.matmul_gflops(plain.pairs_per_step, 513, 32)
    flops_pair = 2 * macs["train"]
    limit = gf_square * 1e9 / flops_pair

    head = ["precision", "torch threads", "prefetch", "batch (segments x frames)", "negatives K", "steps", "train s",
            "pairs/s", "steps/s", "scored pairs/s"]
    table = _bench.md_table(head, [[r["precision"], r["threads"], r["prefetch"], r["batch"], r["k"], r["steps"],
                                    f"{r['train_s']:.1f}", f"{r['pairs_s']:,.0f}", f"{r['steps_s']:.1f}",
                                    f"{r['scored_s']:,.0f}"] for r in rows])
    one = next((r for r in rows if r["threads"] == 1 and r["precision"] == "float32" and r["prefetch"] == "no"),
               rows[0])
    single = next((r for r in proc_rows if r["processes"] == 1), None)
    procs = _bench.md_table(
        ["processes (1 thread each)", "batch per process", "global batch", "steps", "train s", "pairs/s", "steps/s",
         "speed-up"],
        [[r["processes"], r["per_process"], r["global"], r["steps"], f"{r['train_s']:.1f}", f"{r['pairs_s']:,.0f}",
          f"{r['steps_s']:.1f}", f"{r['pairs_s'] / single['pairs_s']:.2f}x" if single else "-"] for r in proc_rows])
    acc = _bench.md_table(
        ["seed", "truth nats", "steps", "load s", "train wall s", "first valid within 5% (step, wall s incl. load)",
         "best valid nats", "test nats", "test error", "test within 5%", "test estimate from"], acc_rows)
    work_txt = (f"Critic work per frame pair in the throughput runs (K={plain.est_cfg.n_negatives}): {macs['forward']:,} multiply-adds "
                f"forward ({macs['per_frame']:,} per frame for heads and first layer, {macs['per_scored_pair']:,} per "
                f"scored pair after it), {macs['train']:,} per training step = {flops_pair / 1e6:.2f} MFLOP. "
                f"Measured single-thread float32 matmul: {gf_square:.1f} GFLOP/s (1024^3), {gf_critic:.1f} GFLOP/s "
                f"([{plain.pairs_per_step}, 513] @ [513, 32], the y projection). Limit at the 1024^3 rate: "
                f"{limit:,.0f} pairs/s; measured 1 thread: {one['pairs_s']:,.0f} pairs/s = "
                f"{one['pairs_s'] / limit:.0%} of it.")
    fast = [r for r in rows if r["threads"] == 1 and r["precision"] == "bf16"]
    if fast:
        import torch

        gf_bf16 = _bench.matmul_gflops(1024, 1024, 1024, dtype=torch.bfloat16)
        best = max(fast, key=lambda r: r["pairs_s"])
        limit16 = gf_bf16 * 1e9 / flops_pair
        work_txt += (f" Measured single-thread bfloat16 matmul: {gf_bf16:.1f} GFLOP/s (1024^3), a limit of "
                     f"{limit16:,.0f} pairs/s; the fastest 1-thread bf16 run (prefetch {best['prefetch']}): "
                     f"{best['pairs_s']:,.0f} pairs/s = {best['pairs_s'] / limit16:.0%} of it, "
                     f"{best['pairs_s'] / limit:.0%} of the float32 limit.")
    body = (f"Synthetic corpus (benchmarks/synthetic.py), model: x embedding {_bench.MODEL['x_embedding_dim']}, y "
            f"projection {_bench.MODEL['y_proj_dim']}, critic {_bench.MODEL['hidden_dims']}, mine estimator, lr "
            f"{args.lr} cosine, 64 negatives for validation/test. Machine: {_bench.machine()}. Load average "
            f"before/after: {load_before} / {load_after}.\n\n{table}\n")
    if proc_rows:
        body += (f"\nThe same run in several processes (torchrun, gloo on the CPU, one torch thread each) at the same "
                 f"global batch, {args.throughput_steps} steps, validation excluded:\n\n{procs}\n")
    if acc_rows:
        body += (f"\nAccuracy runs: critic options {_bench.ACCURACY_CRITIC}, weight decay {args.weight_decay} "
                 f"(see ACCURACY_CRITIC in _bench.py).\n\n{acc}\n\nValidation curves (step: nats): "
                 f"{'; '.join(curves)}.\n")
    body += f"\n{work_txt}\n"
    # Without the accuracy runs the figures go to a section of their own, leaving the full run's in place.
    title = ("training throughput (synthetic corpus)" if args.no_accuracy
             else "training throughput and time to accuracy (synthetic corpus)")
    _bench.publish(title, "throughput.py", argv, body, save=not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())

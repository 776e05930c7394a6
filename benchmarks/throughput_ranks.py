"""One rank of throughput.py's multi-process rows: the same short training run under torchrun (gloo, CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/throughput_ranks.py \\
        --config CONFIG --steps 300 --batch-size 32 --out rows.json

Every rank loads the corpus of CONFIG (cached by throughput.py before), trains --batch-size segments
per step under DistributedDataParallel with one torch thread, and rank 0 writes its timing to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Train on this rank and, on rank 0, write the run's timing as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the benchmark's minecli config")
    ap.add_argument("--steps", type=int, required=True, help="optimiser steps")
    ap.add_argument("--batch-size", type=int, required=True, help="segments per step on each rank")
    ap.add_argument("--out", type=Path, required=True, help="JSON file rank 0 writes")
    args = ap.parse_args(argv)

    from minecli.core.distributed import close_group, init_group, rank, world_size

    created = init_group()
    try:
        loaded = _bench.load(args.config)
        # reference off and one validation at the end, excluded from the time: these rows time training steps
        trainer = _bench.make_trainer(loaded, steps=args.steps, validate_every=args.steps, threads=1,
                                      batch_size=args.batch_size, critic={"reference": False}, distributed=True)
        fit = _bench.timed_fit(trainer)
        if rank() == 0:
            args.out.write_text(json.dumps({"processes": world_size(), "train_s": fit.wall - fit.valid_seconds,
                                            "pairs_per_step": trainer.pairs_per_step, "steps": trainer.step}))
    finally:
        close_group(created)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # As minecli's own ranks do (cli.py): after DistributedDataParallel a C++ destructor in the
    # interpreter's teardown aborts about one rank in twenty though its work is done and written.
    os._exit(code)

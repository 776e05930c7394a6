"""Extraction speed of registered extractors: seconds of audio per wall-clock second, and peak RSS.

    python benchmarks/extraction.py                        # every registered extractor
    python benchmarks/extraction.py encodec s3 mimi --random-weights
    python benchmarks/extraction.py encodec -p encodec.model=48khz -p encodec.bandwidth=24

Each extractor runs in its own process, so the peak RSS is its own. Audio is generated (chirps plus
noise) at the extractor's sample rate and channel count. Without --random-weights, extractors whose
pretrained weights are missing are reported as skipped; with it, extractors that offer
``use_random_weights()`` run the real architecture with random weights (same cost, meaningless
output). The table goes to stdout and is appended to benchmarks/RESULTS.md unless --no-save.
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _bench  # the benchmarks folder is on sys.path when a script in it runs

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _audio(n: int, seconds: float, rate: int, channels: int) -> list[Any]:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    out = []
    for i in range(n):
        rows = [0.3 * np.sin(2 * np.pi * (100 + 50 * i + 300 * (c + 1) * t) * t) + 0.05 * rng.standard_normal(t.shape)
                for c in range(channels)]
        out.append(torch.from_numpy(np.stack(rows).astype(np.float32)))
    return out


def run_one(name: str, params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Time one extractor in this process and return a result row."""
    import torch

    from minecli import MinecliError, make_extractor

    if args.threads:
        torch.set_num_threads(args.threads)
    row: dict[str, Any] = {"name": name, "params": params, "threads": torch.get_num_threads()}
    ext = make_extractor(name, params)
    spec = ext.spec()
    row["stream"] = spec.describe()
    if spec.sample_rate is None:
        row["skipped"] = "reads no audio"
        return row
    batch = args.batch_size or ext.batch_size
    row["batch"] = batch
    weights = "as configured"
    if args.random_weights and hasattr(ext, "use_random_weights"):
        ext.use_random_weights(0)
        weights = "random"
    try:
        ext.ensure_loaded()
    except MinecliError as exc:
        row["skipped"] = str(exc)
        return row
    row["weights"] = weights
    waves = _audio(args.utterances, args.seconds, spec.sample_rate, spec.channels)
    with torch.inference_mode():
        ext.extract_batch(waves[:batch], spec.sample_rate)  # warm-up: lazy init, allocator, kernels
        start = time.perf_counter()
        frames = 0
        for i in range(0, len(waves), batch):
            frames += sum(o.shape[0] for o in ext.extract_batch(waves[i:i + batch], spec.sample_rate))
        wall = time.perf_counter() - start
    audio_s = args.utterances * args.seconds
    row.update(audio_s=audio_s, wall_s=wall, realtime=audio_s / wall, frames=frames,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["extractor", "params", "stream", "weights", "batch", "threads", "audio s", "wall s", "x realtime",
            "peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        if "skipped" in r or "error" in r:
            why = r.get("skipped") or r.get("error")
            lines.append(f"| {r['name']} | {params} | {r.get('stream', '?')} | skipped: {why} | | | | | | |")
            continue
        lines.append(f"| {r['name']} | {params} | {r['stream']} | {r['weights']} | {r['batch']} | {r['threads']} | "
                     f"{r['audio_s']:.0f} | {r['wall_s']:.2f} | {r['realtime']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def _parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--param expects NAME.KEY=VALUE, e.g. encodec.bandwidth=12; got {item!r}")
        out.setdefault(name, {})[field] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="extractor names (default: all registered)")
    ap.add_argument("-p", "--param", action="append", default=[], help="NAME.KEY=VALUE extractor param")
    ap.add_argument("--random-weights", action="store_true",
                    help="use random weights for extractors that offer them (timing only)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each generated utterance")
    ap.add_argument("--utterances", type=int, default=16, help="utterances per extractor")
    ap.add_argument("--batch-size", type=int, default=0, help="override each extractor's batch_size")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS}")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        name, params = json.loads(args.child)
        try:
            row = run_one(name, params, args)
        except Exception as exc:  # noqa: BLE001 - a failing extractor is one row, not a crash
            row = {"name": name, "params": params, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        print(json.dumps(row))
        return 0

    from minecli import get_registry

    names = args.names or get_registry().names("extractor")
    params = _parse_params(args.param)
    rows = []
    for name in names:
        child = [sys.executable, __file__, "--child", json.dumps([name, params.get(name, {})]),
                 "--seconds", str(args.seconds), "--utterances", str(args.utterances),
                 "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        if args.random_weights:
            child.append("--random-weights")
        print(f"benchmarking {name} ...", file=sys.stderr)
        run = subprocess.run(child, capture_output=True, text=True)
        last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        try:
            rows.append(json.loads(last))
        except json.JSONDecodeError:
            tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"name": name, "params": params.get(name, {}), "error": tail})
    table = _table(rows)
    print(table)
    if not args.no_save:
        command = "python benchmarks/extraction.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        note = ("Random weights: the real architectures with random parameters; speed only, outputs meaningless.\n\n"
                if args.random_weights else "")
        body = (f"{args.utterances} utterances of {args.seconds:g} s each per extractor, generated audio, CPU."
                f"\n\n{note}{table}")
        _bench.write_section("extraction speed", command, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

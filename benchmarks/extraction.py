"""Extraction throughput per extractor against batch size and number of processes (seconds of audio per second).

    python benchmarks/extraction.py mel complex_spec encodec s3 mimi wav2vec2 --random-weights
    python benchmarks/extraction.py encodec --batch-sizes 1,8,32 --processes 1 --device cuda
    python benchmarks/extraction.py encodec -p encodec.model=48khz -p encodec.bandwidth=24

Utterances are generated (chirps plus noise) at the extractor's rate and channel count, with lengths
spread from half to one and a half times --seconds, and go through minecli's own path: sorted into
length buckets of at most the batch size, zero-padded, one ``extract_batch`` per bucket, results back
on the CPU. With --processes 2 two processes (a gloo group, as under torchrun) each extract every
other utterance, timed from a barrier before to a barrier after, so the figure is the pair's. Each
extractor and process count runs in fresh processes, so the peak RSS is the extractor's own. With
--random-weights, extractors offering ``use_random_weights()`` run the real architecture with random
weights (the cost of the real model, meaningless output); without, missing weights skip the extractor.
The table goes to stdout and into benchmarks/RESULTS.md unless --no-save.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from typing import Any

import _bench  # the benchmarks folder is on sys.path when a script in it runs

TITLE = "extraction speed"


def _audio(n: int, seconds: float, rate: int, channels: int) -> list[Any]:
    """n utterances from 0.5 to 1.5 times `seconds` long, so batches are padded as in a real corpus."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        length = seconds * (0.5 + (i / max(n - 1, 1)))
        t = np.arange(int(length * rate)) / rate
        rows = [0.3 * np.sin(2 * np.pi * (100 + 50 * i + 300 * (c + 1) * t) * t) + 0.05 * rng.standard_normal(t.shape)
                for c in range(channels)]
        out.append(torch.from_numpy(np.stack(rows).astype(np.float32)))
    rng.shuffle(out)  # a filelist is not sorted by length
    return out


def run_child(name: str, params: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One rank: time one extractor at every batch size on its share of the utterances."""
    import torch

    from minecli import MinecliError, make_extractor
    from minecli.core.batching import length_buckets
    from minecli.core.devices import resolve_device
    from minecli.core.distributed import barrier, close_group, gather, init_group, launched

    torch.set_num_threads(args.threads)
    created = init_group()
    try:
        rank = launched()
        ext = make_extractor(name, params)
        spec = ext.spec()
        base = {"name": name, "params": params, "stream": spec.describe(), "processes": rank.count,
                "threads": torch.get_num_threads()}
        if spec.sample_rate is None:
            return [{**base, "skipped": "reads no audio"}]
        weights = "as configured"
        if args.random_weights and hasattr(ext, "use_random_weights"):
            ext.use_random_weights(0)
            weights = "random"
        ext.place(resolve_device(args.device))
        try:
            ext.ensure_loaded()
        except MinecliError as exc:
            return [{**base, "skipped": str(exc)}]
        base.update(weights=weights, device=str(ext.device))
        waves = _audio(args.utterances, args.seconds, spec.sample_rate, spec.channels)
        mine = [waves[i] for i in rank.take([f"{i:06d}" for i in range(len(waves))])]
        audio_s = sum(w.shape[-1] for w in waves) / spec.sample_rate
        max_samples = int(args.max_batch_seconds * spec.sample_rate)
        rows = []
        for batch in args.batch_sizes:
            buckets = length_buckets([w.shape[-1] for w in mine], batch, max_samples)
            with torch.inference_mode():
                # One untimed pass (lazy init, kernels), which also sizes the timed part: passes enough
                # for --min-time, the same count on every rank so the barriers pair up.
                first = time.perf_counter()
                _pass(ext, mine, buckets, spec.sample_rate)
                reps = max(gather(max(1, min(1000, math.ceil(args.min_time / (time.perf_counter() - first))))))
                barrier()
                start = time.perf_counter()
                frames = sum(_pass(ext, mine, buckets, spec.sample_rate) for _ in range(reps))
                barrier()  # the pair's time: from both starting to the last one finishing
                wall = time.perf_counter() - start
            rows.append({**base, "batch": batch, "audio_s": reps * audio_s, "wall_s": wall,
                         "realtime": reps * audio_s / wall, "frames": frames, "passes": reps})
        peak = max(gather(_bench.peak_rss_mb()))
        for row in rows:
            row["peak_rss_mb"] = peak
        return rows
    finally:
        close_group(created)


def _pass(ext: Any, waves: list[Any], buckets: list[list[int]], rate: int) -> int:
    """Extract every bucket once (waiting for the GPU to finish); returns the frames produced."""
    import torch

    frames = sum(o.shape[0] for b in buckets for o in ext.extract_batch([waves[i] for i in b], rate))
    if torch.device(ext.device).type == "cuda":
        torch.cuda.synchronize(ext.device)
    return frames


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(name: str, params: dict[str, Any], processes: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run one extractor in `processes` fresh processes (rank 0's rows come back as JSON)."""
    child = [sys.executable, __file__, "--child", json.dumps([name, params]), "--seconds", str(args.seconds),
             "--utterances", str(args.utterances), "--batch-sizes", ",".join(map(str, args.batch_sizes)),
             "--threads", str(args.threads), "--device", args.device,
             "--max-batch-seconds", str(args.max_batch_seconds), "--min-time", str(args.min_time)]
    if args.random_weights:
        child.append("--random-weights")
    port = str(_free_port())
    procs = []
    for rank in range(processes):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": str(args.threads)}
        procs.append(subprocess.Popen(child, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate() for p in procs]
    out, err = outputs[0]
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return [{"name": name, "params": params, "processes": processes, "error": tail}]


def _table(rows: list[dict[str, Any]]) -> str:
    head = ["extractor", "params", "stream", "weights", "device", "processes", "threads/proc", "batch", "audio s",
            "wall s", "x realtime", "peak RSS MB"]
    body = []
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
        if "skipped" in r or "error" in r:
            why = r.get("skipped") or r.get("error")
            body.append([r["name"], params, r.get("stream", "?"), f"skipped: {why}"] + [""] * 8)
            continue
        body.append([r["name"], params, r["stream"], r["weights"], r["device"], r["processes"], r["threads"],
                     r["batch"], f"{r['audio_s']:.1f}", f"{r['wall_s']:.2f}", f"{r['realtime']:.1f}",
                     f"{r['peak_rss_mb']:.0f}"])
    return _bench.md_table(head, body)


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


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="extractor names (default: all registered)")
    ap.add_argument("-p", "--param", action="append", default=[], help="NAME.KEY=VALUE extractor param")
    ap.add_argument("--random-weights", action="store_true",
                    help="use random weights for extractors that offer them (timing only)")
    ap.add_argument("--seconds", type=float, default=2.0, help="mean length of the generated utterances")
    ap.add_argument("--utterances", type=int, default=8, help="utterances per extractor")
    ap.add_argument("--batch-sizes", type=_ints, default=[1, 4, 8], help="comma-separated batch sizes")
    ap.add_argument("--processes", type=_ints, default=[1, 2], help="comma-separated process counts")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (one GPU per process)")
    ap.add_argument("--max-batch-seconds", type=float, default=320.0, help="padded audio per batch at most")
    ap.add_argument("--min-time", type=float, default=1.0, help="repeat fast extractors to time at least this long")
    ap.add_argument("--no-save", action="store_true", help="print only; leave RESULTS.md as it is")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        name, params = json.loads(args.child)
        try:
            rows = run_child(name, params, args)
        except Exception as exc:  # noqa: BLE001 - a failing extractor is one row, not a crash
            rows = [{"name": name, "params": params, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}]
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(rows))
        return 0

    from minecli import get_registry

    names = args.names or get_registry().names("extractor")
    params = _parse_params(args.param)
    rows: list[dict[str, Any]] = []
    for name in names:
        for processes in args.processes:
            print(f"benchmarking {name} with {processes} process(es) ...", file=sys.stderr)
            rows.extend(_launch(name, params.get(name, {}), processes, args))
    table = _table(rows)
    note = ("Random weights: the real architectures with random parameters; speed only, outputs meaningless.\n\n"
            if args.random_weights else "")
    body = (f"{args.utterances} generated utterances per extractor, {args.seconds * 0.5:g} to {args.seconds * 1.5:g} s "
            f"long ({args.seconds:g} s on average), batched by length as `minecli extract` does; {args.threads} torch "
            f"thread(s) per process; with 2 processes each extracts half, timed between two barriers of a gloo "
            f"group.\n\n{note}{table}")
    _bench.publish(TITLE, "extraction.py", argv, body, not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the training benchmarks: machine facts, the results file, the benchmark config."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

# The model size of the comparison: the original pipeline's shipped config.yaml (projection 32,
# hidden [64, 32]) with the x embedding at 32 as well, for an index x and a 513-dim float y.
MODEL = {"x_embedding_dim": 32, "y_proj_dim": 32, "hidden_dims": [64, 32]}


def machine() -> str:
    """'x86_64, 2 CPUs, <model name>' from platform and /proc/cpuinfo."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu}"


def load_average() -> str:
    """The 1/5/15-minute load averages as text."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def command_line(script: str, argv: list[str] | None) -> str:
    """The command as a user would type it."""
    args = argv if argv is not None else sys.argv[1:]
    return f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in args)


def step_probe_ms(steps: int = 60) -> float:
    """Milliseconds per training step of a critic of the default size (batch 512 with 4 negatives through a
    128x128 MLP, backward and AdamW), on the current torch threads: the host's speed at this moment.

    The machine's speed drifts (the same run took 20 s and 33 s an hour apart): a probe beside the seconds
    tells a slow host from slower code.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    h = torch.randn(512 * 5, 128, generator=gen)

    def step() -> None:
        loss = net(h).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - t0) / steps


# Read when a script imports this module, before its own work loads the machine.
LOAD_AT_START = load_average()
HEADER = ("# Benchmark results\n\nThe current figures, one section per benchmark, each replaced by the next run of its "
          "script (command, machine, date and load stated); git keeps the history.\n")


def write_section(title: str, command: str, body: str) -> None:
    """Replace (or add) the section called ``title`` in benchmarks/RESULTS.md with this run's figures."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"## {title}\n\n`{command.strip()}`\n\n{stamp}; machine: {machine()}; load average before the run: "
             f"{LOAD_AT_START}.\n\n{body.rstrip()}\n")
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    parts = re.split(r"(?m)^(?=## )", text)
    head, sections = parts[0], parts[1:]
    for i, sec in enumerate(sections):
        if sec.splitlines()[0] == f"## {title}":
            sections[i] = block + "\n"
            break
    else:
        sections.append(block + "\n")
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text((head if head.strip() else HEADER).rstrip() + "\n\n" + "".join(sections).rstrip() + "\n")
    os.replace(tmp, RESULTS)
    print(f"wrote the section '{title}' of {RESULTS}", file=sys.stderr)


def publish(title: str, script: str, argv: list[str] | None, body: str, save: bool) -> None:
    """Print a benchmark's result and, when ``save``, put it in RESULTS.md with its command line."""
    print(body)
    if save:
        write_section(title, command_line(script, argv), body)


def md_table(head: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def minecli_config(corpus: Path, out: Path, *, steps: int, batch_size: int, segment_length: int,
                   n_negatives: int, lr: float, validate_every: int, threads: int | None,
                   eval_negatives: int = 64, model: dict[str, Any] | None = None) -> Path:
    """Write a ``minecli run`` config for the synthetic corpus (CSV input) and return its path."""
    model = {**MODEL, **(model or {})}
    doc = {
        "data": {"train_csv": str(corpus / "train.csv"), "valid_csv": str(corpus / "valid.csv"),
                 "test_csv": str(corpus / "test.csv"), "features_dir": str(corpus)},
        "x": {"extractor": "precomputed", "params": {"kind": "index", "vocab_size": 1024, "frame_rate": 50},
              "head": {"name": "embedding", "params": {"dim": model["x_embedding_dim"]}}},
        "y": {"extractor": "precomputed", "params": {"kind": "float", "dim": 513, "frame_rate": 100},
              "head": {"name": "projection", "params": {"dim": model["y_proj_dim"]}}},
        "pairing": {"context_frames": 1, "normalization": "standard", "segment_length": segment_length},
        "estimator": {"name": "mine", "n_negatives": n_negatives, "eval_negatives": eval_negatives},
        "critic": {"form": "mlp", "hidden_dims": model["hidden_dims"]},  # the original's critic form
        "training": {"steps": steps, "batch_size": batch_size, "lr": lr, "validate_every": validate_every,
                     "early_stopping_patience": None, "threads": threads, "seed": 0, "progress": False,
                     "bootstrap": 0, "null_permutations": 0},
        "output": {"dir": str(out / "run"), "resume": False, "save_every": None},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "minecli-synthetic.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Loaded:
    """A prepared config and its normalised frame banks."""

    prep: Any
    banks: dict[str, Any]
    seconds: float


def load(config: Path) -> Loaded:
    """Read a corpus the way ``minecli run`` does: prepare, extract what the cache lacks, align, normalise."""
    from minecli.core.pipeline import build_banks, extract_all, prepare

    t0 = time.perf_counter()
    prep = prepare(config)
    extract_all(prep, progress=False)
    banks, _, _ = build_banks(prep)
    return Loaded(prep, banks, time.perf_counter() - t0)


# The accuracy runs' critic for the token-vs-spectrum corpus: the quadratic term gets the
# <embedding(token), projection(y)> structure of y = mu[x] + noise directly (without it the same runs
# end 6-7% under the truth), and weight decay shrinks the embeddings of rare Zipf tokens.
ACCURACY_CRITIC = {"quadratic_dim": 64, "mlp_lr_scale": 0.1}
ACCURACY_WEIGHT_DECAY = 0.3


def make_trainer(loaded: Loaded, context: int = 1, critic: dict[str, Any] | None = None, distributed: bool = False,
                 **training: Any) -> Any:
    """A Trainer built from the config (as ``minecli run`` builds it), with critic and training fields overridden;
    ``distributed``: one rank of a torchrun process group."""
    from dataclasses import replace

    from minecli.core.trainer import Trainer

    cfg = loaded.prep.cfg
    tr = replace(cfg.training, **{"segment_length": cfg.pairing.segment_length, **training})
    return Trainer(loaded.prep.specs["x"], loaded.prep.specs["y"], loaded.banks["train"], loaded.banks["valid"],
                   loaded.banks["test"], context_x=context, context_y=context, head_x=cfg.x.head, head_y=cfg.y.head,
                   critic=replace(cfg.critic, **(critic or {})), estimator=cfg.estimator, training=tr,
                   distributed=distributed)


@dataclass
class TimedFit:
    """Wall time of a fit, the part spent validating, and (step, seconds since start, valid MI) per validation."""

    wall: float
    valid_seconds: float
    points: list[tuple[int, float, float]]


def timed_fit(trainer: Any) -> TimedFit:
    """Run ``trainer.fit()`` recording the wall time of each validation."""
    points: list[tuple[int, float, float]] = []
    spent = [0.0]
    inner = trainer.validate
    start = time.perf_counter()

    def validate() -> float:
        a = time.perf_counter()
        value = inner()
        spent[0] += time.perf_counter() - a
        points.append((trainer.step, time.perf_counter() - start, value))
        return value

    trainer.validate = validate
    try:
        trainer.fit()
    finally:
        del trainer.validate
    return TimedFit(time.perf_counter() - start, spent[0], points)


def critic_macs(model: Any, n_negatives: int) -> dict[str, int]:
    """Multiply-adds of the critic for one joint pair plus its negatives: forward and one training step.

    Heads and the split first layer run once per frame; the layers after the first run for the joint
    pair and each of the K marginal pairs (marginals reuse the heads' outputs). Backward costs a
    weight gradient for every linear layer plus an input gradient for every layer except those that
    read the data (embedding lookups cost no multiply-adds).
    """
    import torch

    def linears(mod: Any) -> list[Any]:
        return [m for m in mod.modules() if isinstance(m, torch.nn.Linear)] if mod is not None else []

    per_frame = [m.in_features * m.out_features for m in linears(model.head_x) + linears(model.head_y)]
    per_frame += [model.first_x.in_features * model.first_x.out_features,
                  model.first_y.in_features * model.first_y.out_features]
    per_pair = [m.in_features * m.out_features for m in linears(model.rest)]
    hidden = model.first_x.out_features
    bilinear = int(getattr(model, "bilinear_dim", 0) or 0)
    if bilinear:  # the optional bilinear term: two factor projections per frame, one dot product per pair
        per_frame += [model.bil_x.in_features * bilinear, model.bil_y.in_features * bilinear]
        hidden += bilinear
    quadratic = int(getattr(model, "quadratic_dim", 0) or 0)
    if quadratic:  # the quadratic term: two projections per frame; per pair an add, a square, a dot product
        per_frame += [model.quad_x.in_features * quadratic, model.quad_y.in_features * quadratic]
        hidden += 2 * quadratic
    fwd = sum(per_frame) + (1 + n_negatives) * (sum(per_pair) + hidden)  # + hidden: the broadcast add
    data_layers = []
    for head, first in ((model.head_x, model.first_x), (model.head_y, model.first_y)):
        has_params = any(True for _ in head.parameters())
        lin = linears(head)
        if lin:
            data_layers.append(lin[0])
        elif not has_params:
            data_layers.append(first)  # the first layer reads the data directly
    no_input_grad = sum(m.in_features * m.out_features for m in data_layers)
    train = 3 * fwd - no_input_grad
    return {"forward": int(fwd), "train": int(train), "per_frame": int(sum(per_frame)),
            "per_scored_pair": int(sum(per_pair) + hidden)}


def matmul_gflops(m: int, k: int, n: int, seconds: float = 1.5, threads: int = 1, dtype: Any = None) -> float:
    """Measured matmul rate of torch for [m, k] @ [k, n] on this many threads (float32 unless `dtype`), GFLOP/s."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        return 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
    finally:
        torch.set_num_threads(old)

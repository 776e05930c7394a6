"""Extraction over several processes: --shard i/n for job arrays and torchrun ranks sharing one cache."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from minecli.core.distributed import Shard, launched, parse_shard
from minecli.core.errors import MinecliError
from minecli.core.pipeline import extract_config, run_config
from minecli.testing import invoke_cli as invoke

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_cover_every_file_exactly_once(count):
    paths = [f"/data/{random.Random(i).random():.8f}.wav" for i in range(23)]
    taken = [i for k in range(count) for i in Shard(k, count).take(paths)]
    assert sorted(taken) == list(range(len(paths)))
    sizes = [len(Shard(k, count).take(paths)) for k in range(count)]
    assert max(sizes) - min(sizes) <= 1
    # the same files whatever order the list arrives in: shards follow the sorted paths
    shuffled = random.Random(1).sample(paths, len(paths))
    assert {shuffled[i] for i in Shard(1 % count, count).take(shuffled)} == \
        {paths[i] for i in Shard(1 % count, count).take(paths)}


def test_ranks_split_a_job_array_shard_further():
    paths = [f"f{i:02d}" for i in range(30)]
    for outer in (Shard(0, 3), Shard(1, 3), Shard(2, 3)):
        parts = [Shard(rank, 2).within(outer) for rank in range(2)]
        taken = [i for p in parts for i in p.take(paths)]
        # the ranks of one array task take exactly that task's files, each once
        assert sorted(taken) == outer.take(paths) and len(set(taken)) == len(taken)
        assert all(p.take(paths) for p in parts)


@pytest.mark.parametrize("text, words", [
    ("3/2", "--shard 3/2: the index must be between 0 and 1 for 2 shards"),
    ("1/0", "--shard 1/0: the index must be between 0 and 0 for 0 shards"),
    ("-1/4", "--shard -1/4: the index must be between 0 and 3"),
    ("a/b", "--shard 'a/b' is not of the form i/n; use e.g. --shard 0/4"),
    ("2", "--shard '2' is not of the form i/n"),
])
def test_bad_shards_are_one_line_with_the_fix(text, words):
    with pytest.raises(MinecliError) as info:
        parse_shard(text)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_bad_shard_on_the_command_line_exits_non_zero(run_config_file):
    result = invoke("extract", str(run_config_file()), "--shard", "3/2")
    assert result.exit_code != 0
    assert "--shard 3/2" in result.stderr and "0/2" in result.stderr


def test_torchrun_environment_is_read(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched() == Shard(2, 4)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(MinecliError, match="RANK=4 does not fit WORLD_SIZE=4"):
        launched()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert launched() == Shard(0, 1)


def test_cuda_without_cuda_is_a_clear_error(run_config_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = invoke("extract", str(run_config_file()), "extraction.device=cuda")
    assert result.exit_code != 0
    assert "extraction.device is 'cuda' but no CUDA device is available; use 'cpu' or 'auto'" in result.stderr


def test_sharded_extract_then_run_extracts_nothing_again(run_config_file):
    config = run_config_file()
    first = extract_config(config, [], shard="0/2")
    second = extract_config(config, [], shard="1/2")
    n0 = int(first.splitlines()[0].split(": ")[2].split()[0])
    n1 = int(second.splitlines()[0].split(": ")[2].split()[0])
    assert n0 > 0 and n1 > 0 and "(shard 1/2)" in second
    result = run_config(config)
    for side in ("x", "y"):
        counts = result.document["extraction"][side]
        assert counts["extracted"] == 0 and counts["cached"] == n0 + n1


# ----------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every entry of a feature cache: store folder -> key -> tensor."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for shard in sorted(folder.glob("*/shard-*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for key in fh.keys():
                out.setdefault(shard.parent.name, {})[key] = fh.get_tensor(key)
    return out


def _ranks(command: list[str], world: int, cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start `command` as `world` torchrun-like ranks on this machine and wait for all of them."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO.parent)}
        procs.append(subprocess.Popen([sys.executable, "-m", "minecli", *command], cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    for rank, proc in enumerate(done):
        assert proc.returncode == 0, f"rank {rank}: {proc.stderr[-2000:]}"
    return done


def test_two_gloo_processes_fill_the_same_cache_as_one(run_config_file, tmp_path):
    two = run_config_file("two.yaml", data={"cache_dir": str(tmp_path / "cache2")},
                          output={"dir": str(tmp_path / "out2")})
    one = run_config_file("one.yaml", data={"cache_dir": str(tmp_path / "cache1")},
                          output={"dir": str(tmp_path / "out1")})
    ranks = _ranks(["run", str(two), "--json"], 2, tmp_path)
    single = run_config(one)

    assert (tmp_path / "out2" / "results.json").exists(), "rank 0 writes the results"
    doc = json.loads(ranks[0].stdout)
    assert ranks[1].stdout == "" and "rank 1/2: extraction (" in ranks[1].stderr
    per_rank = {}
    for side in ("x", "y"):
        counts = doc["extraction"][side]
        assert counts["processes"] == 2
        assert counts["extracted"] == single.document["extraction"][side]["extracted"]
    for shard in (tmp_path / "cache2").glob("*/shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as fh:
            per_rank[shard] = len(list(fh.keys()))
    assert len(per_rank) >= 4, "each rank wrote shards of its own for each side"

    a, b = _cache(tmp_path / "cache2"), _cache(tmp_path / "cache1")
    assert a.keys() == b.keys() and all(a[s].keys() == b[s].keys() for s in a)
    for store in a:
        for key, tensor in a[store].items():
            assert torch.equal(tensor, b[store][key]), (store, key)
    # the same features; two ranks train on other frames (test_ddp_training.py), within the interval
    lo, hi = single.document["ci95_test_noise_nats"]
    assert lo <= doc["mi_nats"] <= hi


def test_torchrun_ranks_split_one_array_task(run_config_file, tmp_path):
    """torchrun itself (2 ranks) on shard 0/2, a plain process on shard 1/2: together every file once."""
    config = run_config_file()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO.parent)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                           str(_free_port()), "-m", "minecli", "extract", str(config), "--shard", "0/2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("x:")]
    assert len(lines) == 2 and all("by 2 processes (shard 0/2)" in ln for ln in lines)
    first = int(lines[0].split(": ")[2].split()[0])
    second = int(extract_config(config, [], shard="1/2").splitlines()[0].split(": ")[2].split()[0])
    assert first > 0 and second > 0
    result = run_config(config)
    assert all(result.document["extraction"][s]["extracted"] == 0 for s in ("x", "y"))
    assert first + second == result.document["extraction"]["x"]["cached"]

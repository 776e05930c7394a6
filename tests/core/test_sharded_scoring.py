"""Validation and test scoring sharded over gloo ranks on the CPU give the scores of one process."""
from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minecli.core.scoring import shard_bounds

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("sharded_scoring_ranks", HERE / "sharded_scoring_ranks.py")
ranks_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ranks_mod)

# Each frame is scored by the same operations on the same inputs as in one process, but in chunks of
# other sizes (a share ends mid-chunk), and a matrix product may block or vectorise a different number
# of rows differently: the last bits of float32 may differ (about 1e-7 relative), never more. A frame
# paired with another frame's negatives, or shares out of order, moves scores by O(1).
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(case: str, world: int, tmp_path: Path) -> list[dict]:
    """Run `case` on `world` gloo ranks and return what each rank saved."""
    port, out, procs = _free_port(), tmp_path / case, []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(REPO.parent), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, str(HERE / "sharded_scoring_ranks.py"), case, str(out)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for rank, proc in enumerate(procs):
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"rank {rank}: {err[-2000:]}"
    finally:
        for proc in procs:  # ranks that disagree on the collectives wait for each other: end them
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(world)]


@pytest.mark.parametrize("n, world", [(101, 2), (2, 3), (7, 3), (1, 2)])
def test_shares_are_contiguous_cover_every_frame_and_differ_by_one_at_most(n, world):
    b = shard_bounds(n, world)
    assert b[0] == 0 and b[-1] == n and all(lo <= hi for lo, hi in zip(b, b[1:]))
    sizes = [hi - lo for lo, hi in zip(b, b[1:])]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("case, world", [("drawn", 2), ("fixed", 2), ("tokens", 2), ("tiny", 3)])
def test_sharded_scores_equal_one_process(case, world, tmp_path):
    single = ranks_mod.score_cases(case, sharded=False)
    got = _run_ranks(case, world, tmp_path)
    n, k = single["tm"].shape
    if case == "tiny":
        assert shard_bounds(n, world)[:2] == [0, 0], "rank 0 scores no frame of its own"
    elif case != "fixed":
        assert n % world == 1, "unequal shares"
    assert single["tj"].abs().max() > 0.5 and single["tm"].std() > 0.1, "scores that tell frames apart"
    torch.testing.assert_close(got[0]["tj"], single["tj"], **TOL)
    torch.testing.assert_close(got[0]["tm"], single["tm"], **TOL)
    for rank in range(1, world):
        assert got[rank]["tj"].shape == (0,) and got[rank]["tm"].shape == (0, k), "only rank 0 holds the scores"
    for rank in range(world):
        # every rank drew what one process draws: the generator goes on identically afterwards
        assert torch.equal(got[rank]["gen"], single["gen"]), rank


def test_sharded_validation_selection_and_estimate_equal_one_process(tmp_path):
    single = ranks_mod.trainer_case(distributed=False)
    got = _run_ranks("trainer", 2, tmp_path)
    main, other = got
    assert main["valid_mi"] == pytest.approx(single["valid_mi"], **{"rel": 1e-5, "abs": 1e-5})
    assert math.isnan(other["valid_mi"]) and other["estimate"] == {}
    # rank 0's selection reached rank 1, which scored the test split with the selected critic
    assert main["reference"] == other["reference"] == single["reference"]
    assert main["scorer"] == other["scorer"] == single["scorer"]
    est, ref = main["estimate"], single["estimate"]
    assert est.keys() == ref.keys()
    for key in ("mi_nats", "ci95_nats", "ci95_test_noise_nats", "p_value", "n_frames", "n_marginal",
                "correlation_length_frames"):
        assert est[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-5), key
    # the in-sample bound and the other critic's bound were scored sharded as well
    assert {"in_sample_nats", "other_estimates_nats"} <= ref["ci_terms"].keys() == est["ci_terms"].keys()
    for key, value in ref["ci_terms"].items():
        assert est["ci_terms"][key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    # the reference refitted on halves of the train split reached rank 1 too, which scored its share with them
    assert ref["half_sample"] is not None and est["half_sample"] is not None
    for key in ("held_out_bound_nats", "half_sample_bounds_nats", "half_sample_shares"):
        assert est["half_sample"][key] == pytest.approx(ref["half_sample"][key], rel=1e-5, abs=1e-5), key

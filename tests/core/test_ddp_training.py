"""Training under DistributedDataParallel: `minecli run` started as two gloo ranks on the CPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from minecli.core.pipeline import run_config

from .test_distributed import _ranks

pytestmark = pytest.mark.usefixtures("installed_plugins")

FRAMES = 200
X = {"kind": "float", "dim": 2, "frame_rate": 100}
Y = {"kind": "float", "dim": 1, "frame_rate": 100}


def noisy_sum(rng, split, i):
    """x: two independent Gaussians; y: their sum plus noise (I(X;Y) = 0.5 ln 3, about 0.55 nats)."""
    x = rng.standard_normal((FRAMES, 2)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True) + rng.standard_normal((FRAMES, 1)).astype(np.float32)
    return x, y.astype(np.float32)


@pytest.fixture
def corpus_config(npy_corpus, write_yaml, tmp_path):
    """``make(name, **sections)``: a config over the Gaussian corpus, the trained critic giving the estimate."""
    corpus = npy_corpus(noisy_sum, counts=(("train", 8), ("valid", 3), ("test", 4)))

    def _make(name: str, **sections: dict) -> Path:
        doc = corpus["doc"](X, Y, critic={"hidden_dims": [32], "reference": False},
                            output={"dir": str(tmp_path / name), "save_every": 20}, **sections)
        return write_yaml(tmp_path / f"{name}.yaml", doc)

    return _make


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_two_ranks_train_one_critic_and_only_rank_0_writes(corpus_config, tmp_path):
    two, one = corpus_config("two"), corpus_config("one")
    ranks = _ranks(["run", str(two), "--json"], 2, tmp_path)
    single = run_config(one).document

    doc = json.loads(ranks[0].stdout)
    assert doc == _results(tmp_path / "two"), "rank 0 printed what it wrote"
    assert ranks[1].stdout == ""
    assert "rank 1/2: extraction (" in ranks[1].stderr and "training (60 steps) and its share of the test " \
        "scoring done" in ranks[1].stderr
    # Step 0 validates the initial critic, the same in both runs: sharded over the two ranks, the
    # validation protocol scores as in one process (float rounding aside; the value is about 1e-4).
    assert doc["history"][0]["valid_mi"] == pytest.approx(single["history"][0]["valid_mi"], rel=1e-4, abs=1e-7)
    assert doc["training"]["processes"] == 2 and "processes" not in single["training"]
    assert doc["training"]["steps_run"] == single["training"]["steps_run"] == 60
    # the ranks drew other frames than the single process did: a different critic, the same quantity
    assert doc["mi_nats"] != single["mi_nats"]
    lo, hi = single["ci95_test_noise_nats"]
    assert lo <= doc["mi_nats"] <= hi, (doc["mi_nats"], lo, hi)
    assert doc["mi_nats"] > 0.3, "the critic learned the dependence"
    # the checkpoint holds both ranks' sampler states, and they differ (each rank samples its own frames)
    with safe_open(str(tmp_path / "two" / "checkpoints" / "last" / "trainer.safetensors"), framework="pt") as fh:
        assert not fh.get_tensor("rng.sampler").equal(fh.get_tensor("rng.sampler.rank1"))
    state = json.loads((tmp_path / "two" / "checkpoints" / "last" / "state.json").read_text())
    assert state["world_size"] == 2


def test_a_stopped_distributed_run_resumes_where_it_stopped(corpus_config, tmp_path):
    """40 steps, then the same run to 80 from the checkpoint: the same critic as 80 steps in one go."""
    first = corpus_config("resumed", training={"steps": 40})
    ranks = _ranks(["run", str(first)], 2, tmp_path)
    assert _results(tmp_path / "resumed")["training"]["steps_run"] == 40
    more = corpus_config("resumed", training={"steps": 80})
    ranks = _ranks(["run", str(more), "--json"], 2, tmp_path)
    assert "resuming from" in ranks[0].stderr and "at step 40" in ranks[0].stderr
    resumed = json.loads(ranks[0].stdout)
    _ranks(["run", str(corpus_config("straight", training={"steps": 80}))], 2, tmp_path)
    straight = _results(tmp_path / "straight")
    assert resumed["training"]["steps_run"] == 80
    assert [h["step"] for h in resumed["history"]] == [0, 20, 40, 60, 80]
    # exact resume: every rank continued its own frames, optimiser and schedule
    assert resumed["history"] == straight["history"]
    assert resumed["mi_nats"] == straight["mi_nats"]

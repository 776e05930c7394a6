"""The trainer against ground truth, on every stream pairing, and its checkpoints and resume."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import minecli
from minecli.testing import gaussian_pair
from minecli.core.data import FrameBank
from minecli.core.errors import MinecliError
from minecli.core.spec import StreamSpec
from minecli.core.trainer import CriticConfig, EstimatorConfig, TrainConfig, Trainer, build_critic, HeadConfig

FAST = dict(progress=False, null_permutations=0, bootstrap=100, validate_every=50)
# These tests are about the trained critic; the closed-form references have their own (test_reference.py).
NEURAL = {"critic": {"reference": False}}




def test_gaussian_estimate_is_close_to_truth():
    x, y, truth = gaussian_pair(8000, 2, 0.8)  # truth 1.022 nats
    r = minecli.estimate_mi(x, y, hidden_dims=[64, 64], steps=800, seed=0, **FAST, **NEURAL)
    # 1,600 test samples give a bootstrap SE near 0.03 nats; a trained lower bound may sit a few
    # percent low. 0.1 nats is about 3 SE plus 5% of the truth.
    assert abs(r.mi_nats - truth) < 0.1, r
    assert r.ci95_nats[0] < r.mi_nats < r.ci95_nats[1]
    assert r.mi_bits == pytest.approx(r.mi_nats / math.log(2))
    # The Gaussian (CCA) reference is exact for Gaussian data.
    assert r.baseline is not None and abs(r.baseline["mi_nats"] - truth) < 0.08


def test_independent_streams_give_zero_and_a_large_p_value():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6000, 3)).astype(np.float32)
    y = rng.standard_normal((6000, 3)).astype(np.float32)
    r = minecli.estimate_mi(x, y, hidden_dims=[32, 32], steps=400, seed=1,
                            **{**FAST, "null_permutations": 19})
    # The truth is 0; a lower bound evaluated on held-out data cannot exceed noise level (~0.03).
    assert r.mi_nats < 0.05
    assert r.ci95_nats[0] <= 0.02
    assert r.p_value is not None and r.p_value > 0.05


def test_index_index_matches_exact_mi_of_a_joint_table():
    rng = np.random.default_rng(5)
    table = rng.dirichlet(np.full(64, 0.3)).reshape(8, 8)
    px, py = table.sum(1, keepdims=True), table.sum(0, keepdims=True)
    nz = table > 0
    truth = float((table[nz] * np.log(table[nz] / (px @ py)[nz])).sum())
    cells = rng.choice(64, size=20000, p=table.ravel())
    x, y = cells // 8, cells % 8
    r = minecli.estimate_mi(x, y, hidden_dims=[32, 32], steps=600, seed=0, **FAST, **NEURAL)
    # 4,000 test pairs: SE of the plug-in-like estimate ~0.015 nats; allow 3 SE plus 3% of truth.
    assert abs(r.mi_nats - truth) < 0.05 + 0.03 * truth, (r.mi_nats, truth)
    assert r.entropy["x"]["log_vocab_nats"] == pytest.approx(math.log(8))
    assert r.baseline["method"] == "discrete_plugin"
    assert abs(r.baseline["mi_nats"] - truth) < 0.03


def _token_utterances(n_utts: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Utterances of tokens held for a few frames; float views are noisy embeddings of the tokens."""
    rng = np.random.default_rng(seed)
    emb_x, emb_y = rng.standard_normal((8, 6)) * 2, rng.standard_normal((8, 5)) * 2
    out: dict[str, list[np.ndarray]] = {"xi": [], "yi": [], "xf": [], "yf": []}
    for _ in range(n_utts):
        tok = np.repeat(rng.integers(0, 8, 40), 3)
        noisy = np.where(rng.random(tok.size) < 0.1, rng.integers(0, 8, tok.size), tok)
        out["xi"].append(tok)
        out["yi"].append(noisy)
        out["xf"].append((emb_x[tok] + 0.3 * rng.standard_normal((tok.size, 6))).astype(np.float32))
        out["yf"].append((emb_y[noisy] + 0.3 * rng.standard_normal((tok.size, 5))).astype(np.float32))
    return out


@pytest.mark.parametrize("context", [1, 3])
@pytest.mark.parametrize("pairing", ["float-float", "index-float", "float-index", "index-index"])
def test_all_four_pairings_with_and_without_context(pairing, context):
    data = _token_utterances(60)
    xk, yk = pairing.split("-")
    xs = data["xi"] if xk == "index" else data["xf"]
    ys = data["yi"] if yk == "index" else data["yf"]
    # Exact I(tok; noisy tok): 90% kept, 10% uniform over 8.
    p_same = 0.9 + 0.1 / 8
    truth = math.log(8) + p_same * math.log(p_same) + (1 - p_same) * math.log((1 - p_same) / 7)
    r = minecli.estimate_mi(xs, ys, context=context, hidden_dims=[32, 32], steps=300, seed=0,
                            batch_size=128, **FAST, **NEURAL)
    # The float views are noisy embeddings that still identify the token almost surely, so every
    # pairing carries nearly the token MI (1.61 nats); 300 steps reach most of it. A 3-frame window
    # spans at most two tokens (held 3 frames each), so with context the MI is at most twice that.
    ceiling = truth if context == 1 else 2 * truth
    assert 0.6 * truth < r.mi_nats < ceiling + 0.15, (pairing, context, r.mi_nats, truth)
    assert r.ci_method.startswith("utterances")  # resampled by utterance (a t interval over fewer than 50)


def test_batch_norm_is_warned_about():
    spec = StreamSpec("float", 100.0, dim=3)
    with pytest.warns(UserWarning, match="erases"):
        build_critic(spec, spec, 1, 1, HeadConfig(), HeadConfig(), CriticConfig(hidden_dims=[8], batch_norm=True))


def test_index_ids_outside_vocab_are_a_clear_error():
    bank = FrameBank.from_arrays(np.arange(20) % 5, np.zeros((20, 2), np.float32))
    with pytest.raises(MinecliError, match="vocab_size"):
        Trainer(StreamSpec("index", 1.0, vocab_size=4), StreamSpec("float", 1.0, dim=2), bank, bank,
                training=TrainConfig(progress=False))


def _small_trainer(tmp_path, steps=60, **training):
    x, y, _ = gaussian_pair(3000, 2, 0.7, seed=2)
    banks = [FrameBank.from_arrays(x[s], y[s]) for s in (slice(0, 2000), slice(2000, 2500), slice(2500, 3000))]
    spec = StreamSpec("float", 1.0, dim=2)
    training = {"early_stopping_patience": None, **training}
    return Trainer(spec, spec, *banks, critic=CriticConfig(hidden_dims=[16, 16], reference=False),
                   estimator=EstimatorConfig(n_negatives=2, eval_negatives=4),
                   training=TrainConfig(steps=steps, batch_size=64, validate_every=10, progress=False,
                                        bootstrap=20, null_permutations=0, **training),
                   checkpoint_dir=tmp_path, save_every=10)


CREEP = {s: 0.5 + 0.0001 * s for s in range(10, 301, 10)}  # a new high at every validation, by 0.001
JUMP = {**CREEP, 30: 0.53, 40: 0.531, 50: 0.532, 60: 0.533}


@pytest.mark.parametrize("readings, min_delta, stops_at", [
    # progress at step 10 sets the bar at 0.501 + 0.25 * 0.04; the creep takes 100 steps to pass it,
    # so after 3 validations without progress training stops, though each of them was a new high
    (CREEP, 0.25, 40),
    (CREEP, 0.0, 300),   # any rise is progress: the creep never stops
    # a rise of 0.028 at step 30 passes the bar: the patience starts over from there
    (JUMP, 0.25, 60),
])
def test_early_stopping_counts_progress_in_standard_errors(tmp_path, monkeypatch, readings, min_delta, stops_at):
    monkeypatch.setattr(Trainer, "validate", lambda self: readings.get(self.step, 0.0))
    monkeypatch.setattr(Trainer, "_validation_se", lambda self: 0.04)
    tr = _small_trainer(tmp_path, steps=300, early_stopping_patience=3, min_steps=0,
                        early_stopping_min_delta=min_delta)
    tr.fit()
    assert tr.step == stops_at and tr.stopped_early is (stops_at < 300)
    # the best reading is kept whether or not it counted as progress
    assert tr.best_step == stops_at and tr.best_value == pytest.approx(readings[stops_at])


def test_a_resumed_run_keeps_the_bar_of_progress(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "_validation_se", lambda self: 0.04)
    readings = {**JUMP, 50: 0.52}

    def validate(self):
        if self.step == 50 and self.interrupt:
            raise KeyboardInterrupt
        return readings.get(self.step, 0.0)

    monkeypatch.setattr(Trainer, "validate", validate)
    kw = dict(steps=300, early_stopping_patience=3, min_steps=0, early_stopping_min_delta=0.25)
    tr = _small_trainer(tmp_path, **kw)
    tr.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    resumed = _small_trainer(tmp_path, **kw)
    resumed.interrupt = False
    resumed.fit()
    # saved at step 40 with the bar at 0.54 (progress at step 30): 40, 50 and 60 fall short of it. A bar
    # read back as the best reading (0.531) would take step 60's 0.533 for progress and train on.
    assert resumed.step == 60 and resumed.stopped_early


def test_the_standard_error_of_a_validation_reading_is_that_of_its_frames():
    tr = _small_trainer(None)
    bank, neg = tr._valid_protocol
    n = bank.n_frames
    tj = torch.randn(n, generator=torch.Generator().manual_seed(0))
    tm = torch.zeros(n, neg.shape[1])
    # the marginal scores are all 0, so the bound is the mean of the joint scores: its standard error is
    # sd / sqrt(n); 200 resamples read a standard error within ~5% (1 / sqrt(2 * 200)), so 15% is 3 of those
    expected = float(tj.std()) / math.sqrt(n)
    assert tr.selection.validation_se((tj, tm)) == pytest.approx(expected, rel=0.15)


def test_resume_after_interruption_is_exact(tmp_path, monkeypatch):
    straight = _small_trainer(tmp_path / "a")
    straight.fit()

    interrupted = _small_trainer(tmp_path / "b")
    real_validate = Trainer.validate

    def failing(self):
        if self.step == 40:
            raise KeyboardInterrupt
        return real_validate(self)

    monkeypatch.setattr(Trainer, "validate", failing)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "validate", real_validate)
    state = json.loads((tmp_path / "b" / "last" / "state.json").read_text())
    assert state["step"] == 30

    resumed = _small_trainer(tmp_path / "b")
    resumed.fit()
    assert resumed.step == straight.step == 60
    assert [h["valid_mi"] for h in resumed.history] == pytest.approx([h["valid_mi"] for h in straight.history])
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_best_checkpoint_holds_the_best_validation_state(tmp_path):
    from safetensors.torch import load_file

    tr = _small_trainer(tmp_path)
    tr.fit()
    best = json.loads((tmp_path / "best" / "state.json").read_text())
    assert best["step"] == tr.best_step
    assert best["valid_mi"] == pytest.approx(max(h["valid_mi"] for h in tr.history))
    weights = load_file(str(tmp_path / "best" / "model.safetensors"))
    # After fit() the model holds the best state, which is what the final estimate uses.
    for k, v in tr.model.state_dict().items():
        assert torch.equal(weights[k], v), k


def test_same_seed_same_number():
    x, y, _ = gaussian_pair(2000, 2, 0.6, seed=4)
    a = minecli.estimate_mi(x, y, hidden_dims=[16], steps=100, seed=7, baseline=False, **FAST)
    b = minecli.estimate_mi(x, y, hidden_dims=[16], steps=100, seed=7, baseline=False, **FAST)
    assert a.mi_nats == b.mi_nats and a.ci95_nats == b.ci95_nats


def test_estimate_mi_warns_when_the_test_value_falls_far_below_validation(monkeypatch):
    """The Python API carries the same warning as a run: a collapsed test value is never silent."""
    real = Trainer.estimate

    def collapsed(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        lo, hi = out["ci95_nats"]
        return {**out, "mi_nats": out["mi_nats"] - 1.0, "ci95_nats": (lo - 1.0, hi - 1.0)}

    monkeypatch.setattr(Trainer, "estimate", collapsed)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 2)).astype(np.float32)
    y = (x + 0.5 * rng.standard_normal((3000, 2))).astype(np.float32)
    r = minecli.estimate_mi(x, y, steps=200, validate_every=50, progress=False, baseline=False)
    assert any("far below the validation value" in w for w in r.warnings), r.warnings

"""Length buckets, padding and device names of batched extraction."""
from __future__ import annotations

import pytest
import torch

from minecli.core.batching import length_buckets, pad_batch
from minecli.core.devices import resolve_device
from minecli.core.errors import ConfigError


def test_buckets_cover_every_utterance_once_within_both_limits():
    lengths = [5, 100, 7, 64, 64, 3, 250, 99, 1, 40]
    batches = length_buckets(lengths, batch_size=3, max_samples=200)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        # a batch over the padded-samples limit only when one utterance alone exceeds it
        assert len(b) * max(lengths[i] for i in b) <= 200 or len(b) == 1
    # longest first, so each batch pads to its first member and neighbours have similar lengths
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert batches[0] == [6]  # 250 samples alone: over the limit


def test_a_batch_of_one_keeps_the_order():
    assert length_buckets([5, 100, 7], batch_size=1, max_samples=10) == [[0], [1], [2]]
    assert length_buckets([], batch_size=8) == []


def test_pad_batch_rounds_up_and_keeps_lengths():
    batch, lengths = pad_batch([torch.ones(1, 5), torch.ones(3)], multiple=4)
    assert batch.shape == (2, 1, 8) and lengths.tolist() == [5, 3]
    assert batch[0, 0, :5].eq(1).all() and batch[0, 0, 5:].eq(0).all() and batch[1, 0, 3:].eq(0).all()


def test_device_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    for bad, words in [("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"), ("tpu", "unknown device")]:
        with pytest.raises(ConfigError) as info:
            resolve_device(bad)
        assert repr(bad) in str(info.value) and words in str(info.value) and "\n" not in str(info.value)


def test_one_gpu_per_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # named explicitly: as given
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(ConfigError, match="cuda:3 does not exist .* at most 2 processes per node"):
        resolve_device("cuda")


def test_each_rank_extracts_on_its_own_gpu_in_larger_batches(monkeypatch):
    from minecli import make_extractor
    from minecli.core.config import ExtractionConfig
    from minecli.core.pipeline import _batching, _place

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "3")
    mel = make_extractor("mel", {})
    _place(mel, ExtractionConfig(), "x")
    assert mel.device == torch.device("cuda", 3)
    assert _batching(mel, ExtractionConfig(), mel.spec()) == (16, 320 * 16000)
    assert _batching(mel, ExtractionConfig(batch_size=5, max_batch_seconds=2), mel.spec()) == (5, 32000)
    encodec = make_extractor("encodec", {})
    _place(encodec, ExtractionConfig(), "x")
    assert _batching(encodec, ExtractionConfig(), encodec.spec())[0] == 16  # CPU choice 1, GPU at least 16
    # a stream's own device param wins over extraction.device
    w2v = make_extractor("wav2vec2", {"device": "cpu"})
    _place(w2v, ExtractionConfig(device="cuda"), "y")
    assert w2v.device == torch.device("cpu")
    assert _batching(w2v, ExtractionConfig(), w2v.spec())[0] == 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")
def test_training_device_follows_the_rules_of_extraction_device():
    from minecli.core.build import resolve_device as training_device

    assert training_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match=r"training\.device is 'cuda' but no CUDA device is available"):
        training_device("cuda")
    with pytest.raises(ConfigError, match=r"training\.device: unknown device 'tpu'"):
        training_device("tpu")

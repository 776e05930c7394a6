"""Every extractor gives the same features through length-bucketed batches as one utterance at a time.

The features go through the feature store, as in a run: utterances of different lengths, sorted into
batches by length and zero-padded, must come out as each one does alone (random weights, tiny models).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minecli import make_extractor
from minecli.core.cache import FeatureStore


def _wave(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sig = 0.3 * np.sin(2 * np.pi * (120 + 400 * t) * t) + 0.05 * rng.standard_normal(t.shape)
    return sig.astype(np.float32)[None]


def _mel():
    return make_extractor("mel", {"n_fft": 400, "frame_rate": 100})


def _complex_spec():
    return make_extractor("complex_spec", {"n_fft": 256, "frame_rate": 50})


def _encodec():
    ext = make_extractor("encodec", {"output": "latent"})
    ext.use_random_weights(seed=0)
    return ext


def _mimi():
    transformers = pytest.importorskip("transformers")
    ext = make_extractor("mimi", {"output": "latent"})
    torch.manual_seed(0)
    ext._model = ext.build_architecture(transformers.MimiConfig(num_filters=16, num_hidden_layers=2,
                                                                intermediate_size=256, num_attention_heads=8))
    return ext


def _s3():
    pytest.importorskip("s3tokenizer")
    ext = make_extractor("s3", {"model": "speech_tokenizer_v2_25hz"})
    ext.use_random_weights(seed=0)  # FSQ tokens need no fitted codebook to vary
    return ext


def _wav2vec2():
    from torchaudio import models

    torch.manual_seed(0)
    conv = [(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 2, 2), (16, 2, 2)]
    net = models.wav2vec2_model(extractor_mode="layer_norm", extractor_conv_layer_config=conv,
                                extractor_conv_bias=True, encoder_embed_dim=32, encoder_projection_dropout=0.0,
                                encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=2,
                                encoder_num_heads=4, encoder_attention_dropout=0.0, encoder_ff_interm_features=64,
                                encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=True,
                                encoder_layer_drop=0.0, aux_num_out=None)
    ext = make_extractor("wav2vec2", {"model": "WAV2VEC2_LARGE_LV60K", "dim": 32, "layer": -1})
    ext._model = net
    return ext


# (builder, tolerance): index streams must match exactly; float streams to float32 rounding of the
# same arithmetic batched differently (convolutions and matmuls over B rows).
EXTRACTORS = {
    "mel": (_mel, 1e-5),
    "complex_spec": (_complex_spec, 1e-5),
    "encodec": (_encodec, 1e-4),
    "mimi": (_mimi, 1e-4),
    "s3": (_s3, 0.0),
    "wav2vec2": (_wav2vec2, 1e-4),
}
SECONDS = (1.1, 0.35, 0.8, 0.62, 0.05, 0.9)


def _extract(ext, tmp_path, name: str, batch_size: int) -> list[torch.Tensor]:
    rate = ext.spec().sample_rate
    waves = {f"utt{i}.wav": _wave(s, rate, i) for i, s in enumerate(SECONDS)}
    paths = list(waves)
    store = FeatureStore(tmp_path / name, ext)
    done = store.extract(paths, paths, waves.__getitem__, desc="test", progress=False, batch_size=batch_size,
                         max_batch_samples=int(2.0 * rate))
    assert done == len(paths)
    return FeatureStore(tmp_path / name, ext).load(paths)


@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_length_bucketed_batches_equal_single_utterances(tmp_path, name):
    build, tol = EXTRACTORS[name]
    ext = build().place("cpu")
    single = _extract(ext, tmp_path, "one", batch_size=1)
    batched = _extract(ext, tmp_path, "four", batch_size=4)
    assert any(t.shape[0] > 0 for t in single)
    lengths = {t.shape[0] for t in single}
    assert len(lengths) > 2, "the utterances differ in length, so batches are padded"
    for one, many in zip(single, batched):
        assert one.shape == many.shape and one.dtype == many.dtype
        if tol == 0.0:
            assert torch.equal(one, many)
        else:
            torch.testing.assert_close(many, one, rtol=tol, atol=tol)
    # the model sits on the extractor's device and the results come back to the CPU for the cache
    for module in ext.modules():
        assert all(p.device == torch.device("cpu") for p in module.parameters())
    assert all(t.device.type == "cpu" for t in batched)


def test_place_moves_a_loaded_model(monkeypatch):
    ext = _wav2vec2()
    ext.ensure_loaded()
    moved = []
    monkeypatch.setattr(type(ext._model), "to", lambda self, device: moved.append(device) or self, raising=False)
    ext.place("cuda:1")
    assert ext.device == "cuda:1" and moved == ["cuda:1"]

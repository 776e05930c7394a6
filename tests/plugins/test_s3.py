"""S3 tokenizer extractor on the real architectures (built by name) with random weights.

The v1 models quantize with a codebook that starts at zero, so random v1 models emit one token; the
fixtures draw the codebook from a Gaussian matched to the (L2-normalised) encoder output instead.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from minecli import ConfigError, MinecliError, MissingDependencyError, WeightsNotFoundError, make_extractor
from minecli.core.audio import load_for
from minecli.plugins.s3 import MODELS, S3Params, S3Tokens

s3tokenizer = pytest.importorskip("s3tokenizer")


def _signal(seconds: float, seed: int = 0, rate: int = 16000) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sig = 0.3 * np.sin(2 * np.pi * (120 + 300 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    sig += 0.05 * rng.standard_normal(t.shape)
    return torch.from_numpy(sig.astype(np.float32))[None]


def fit_codebook(model, waves: list[torch.Tensor], seed: int = 0) -> None:
    """Draw the VQ codebook from a Gaussian matched to the normalised encoder output it quantizes."""
    mels = [s3tokenizer.log_mel_spectrogram(w[0]) for w in waves]
    feats, lengths = s3tokenizer.padding(mels)
    with torch.no_grad():
        hidden, hidden_len = model.encoder(feats, lengths)
    x = torch.cat([hidden[i, : int(n)] for i, n in enumerate(hidden_len)])
    x = torch.nn.functional.normalize(x.float(), p=2, dim=-1)
    book = model.quantizer._codebook.embed
    gen = torch.Generator().manual_seed(seed)
    book.copy_(x.mean(0) + x.std(0) * torch.randn(book.shape, generator=gen))


_CACHE: dict[str, S3Tokens] = {}


def built(name: str) -> S3Tokens:
    """One random-weight extractor per model for the whole file (building v3 takes a second or two)."""
    if name not in _CACHE:
        ext = S3Tokens(S3Params(model=name))
        ext.use_random_weights(seed=0)
        if "v1" in name:
            fit_codebook(ext.model, [_signal(2.0, seed=1), _signal(1.5, seed=2)])
        _CACHE[name] = ext
    return _CACHE[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_matches_output(name):
    ext = built(name)
    spec = ext.spec()
    rate, vocab = {"speech_tokenizer_v1": (50, 4096), "speech_tokenizer_v1_25hz": (25, 4096),
                   "speech_tokenizer_v2_25hz": (25, 6561), "speech_tokenizer_v3_25hz": (25, 6561)}[name]
    assert (spec.kind, spec.frame_rate, spec.vocab_size, spec.n_codebooks) == ("index", rate, vocab, 1)
    assert (spec.sample_rate, spec.channels) == (16000, 1)
    for seconds in (1.0, 2.3):
        out = ext(_signal(seconds, seed=3), 16000)
        assert out.dtype == torch.int64 and out.shape[1] == 1
        assert abs(out.shape[0] - seconds * spec.frame_rate) <= 1, (out.shape, seconds)
        assert int(out.min()) >= 0 and int(out.max()) < spec.vocab_size
    assert out.unique().numel() > (20 if "v1" in name else 3)


def test_native_int32_tokens_become_int64():
    ext = built("speech_tokenizer_v2_25hz")
    wave = _signal(1.2, seed=4)
    mel = s3tokenizer.log_mel_spectrogram(wave[0])
    native, native_len = ext.model.quantize(mel[None], torch.tensor([mel.shape[1]]))
    assert native.dtype == torch.int32
    out = ext(wave, 16000)
    assert out.dtype == torch.int64
    assert torch.equal(out[:, 0], native[0, : int(native_len[0])].long())


@pytest.mark.parametrize("name", ["speech_tokenizer_v1", "speech_tokenizer_v2_25hz"])
def test_batch_with_padding_equals_single_and_is_deterministic(name):
    ext = built(name)
    waves = [_signal(s, seed=i) for i, s in enumerate([1.7, 0.6, 2.4, 1.01])]
    batch = ext.extract_batch(waves, 16000)
    for wave, b in zip(waves, batch):
        one = ext(wave, 16000)
        assert torch.equal(one, b)
        assert torch.equal(one, ext(wave, 16000))
        assert abs(one.shape[0] - wave.shape[-1] / 16000 * ext.spec().frame_rate) <= 1
    assert ext.extract_batch([], 16000) == []
    assert ext(torch.zeros(1, 100), 16000).shape == (0, 1)


def test_resampled_and_downmixed_input_from_a_file(chirp, write_wav):
    ext = built("speech_tokenizer_v1")
    path = write_wav(np.stack([chirp(1.5, 22050), chirp(1.5, 22050, seed=2)]), 22050)
    spec = ext.spec()
    wave = torch.from_numpy(load_for(path, spec.sample_rate, spec.channels))
    out = ext(wave, spec.sample_rate)
    assert abs(out.shape[0] - 1.5 * 50) <= 1
    stereo = torch.from_numpy(load_for(path, spec.sample_rate, 2))
    assert torch.equal(ext(stereo, spec.sample_rate), out)


def test_wrong_sample_rate_is_a_clear_error():
    with pytest.raises(ValueError, match="s3 expects audio at 16000 Hz, got 24000 Hz"):
        built("speech_tokenizer_v2_25hz")(_signal(0.5, rate=24000), 24000)


@pytest.mark.parametrize("params, words", [
    ({"model": "speech_tokenzer_v2_25hz"}, "Did you mean 'speech_tokenizer_v2_25hz'"),
    ({"model": "v5"}, "must be one of"),
    ({"checkpoint": "weights.bin"}, "must be a .onnx file"),
    ({"checkpoint": "  "}, "path to a .onnx"),
])
def test_bad_params_are_clear_errors(params, words):
    with pytest.raises(ConfigError, match=words):
        make_extractor("s3", params)


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        make_extractor("s3", {"model": "speech_tokenizer_v1_25hz"}).ensure_loaded()
    msg = str(info.value)
    assert "\n" not in msg
    assert s3tokenizer._MODELS["speech_tokenizer_v1_25hz"] in msg
    assert str(tmp_path / "s3tokenizer" / "speech_tokenizer_v1_25hz.onnx") in msg
    missing = tmp_path / "gone.onnx"
    with pytest.raises(WeightsNotFoundError, match=f"checkpoint not found: {missing}"):
        make_extractor("s3", {"checkpoint": str(missing)}).ensure_loaded()


def test_local_checkpoint_keeps_the_25hz_model(tmp_path):
    # s3tokenizer.load_model(path) would build the 50 Hz model here; building by name keeps 25 Hz.
    ref = built("speech_tokenizer_v1_25hz")
    path = tmp_path / "tokenizer.pt"
    torch.save(ref.model.state_dict(), path)
    ext = make_extractor("s3", {"model": "speech_tokenizer_v1_25hz", "checkpoint": str(path)})
    wave = _signal(2.0, seed=9)
    out = ext(wave, 16000)
    assert abs(out.shape[0] - 2.0 * 25) <= 1
    assert torch.equal(out, ref(wave, 16000))
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(MinecliError, match="cannot load .*broken.onnx as speech_tokenizer_v2_25hz"):
        make_extractor("s3", {"checkpoint": str(bad)}).ensure_loaded()


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3tokenizer", None)
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[s3\]'"):
        S3Tokens(S3Params()).ensure_loaded()


def test_spec_imports_no_model_library():
    code = ("import sys; from minecli import make_extractor; "
            "s = make_extractor('s3', {'model': 'speech_tokenizer_v1'}).spec(); "
            "assert (s.frame_rate, s.vocab_size) == (50, 4096), s; "
            "assert 's3tokenizer' not in sys.modules and 'torch' not in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

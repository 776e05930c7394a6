"""EnCodec extractor on the real 24 and 48 kHz architectures with random weights.

Random EnCodec codebooks are all zero (they wait for k-means on the first training batch), so every
frame would get code 0. The fixtures below draw each residual stage's codebook from a Gaussian
matched to that stage's input, stage by stage, which gives hundreds of distinct codes.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from minecli import ConfigError, MissingDependencyError, WeightsNotFoundError, make_extractor
from minecli.core.audio import load_for
from minecli.plugins.encodec import Encodec, EncodecParams

pytest.importorskip("encodec")


def _signal(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Chirps plus noise, different per channel: ``[channels, samples]`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    rows = [0.3 * np.sin(2 * np.pi * (150 + 400 * (c + 1) * t) * t) + 0.05 * rng.standard_normal(t.shape)
            for c in range(channels)]
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def fit_codebooks(model, wave: torch.Tensor, seed: int = 0) -> None:
    """Draw each RVQ stage's codebook from a Gaussian matched to that stage's input residual."""
    captured: list[torch.Tensor] = []
    hook = model.encoder.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    with torch.no_grad():
        model.encode(wave[None])
    hook.remove()
    residual = torch.cat([c.transpose(1, 2).reshape(-1, c.shape[1]) for c in captured])  # [N, 128]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:
            book = layer._codebook.embed
            book.copy_(residual.mean(0) + residual.std(0) * torch.randn(book.shape, generator=gen))
            quantized = layer.decode(layer.encode(residual.T[None]))[0].T
            residual = residual - quantized


@pytest.fixture(scope="module")
def model24():
    ext = Encodec(EncodecParams(model="24khz", bandwidth=24.0))
    ext.use_random_weights(seed=0)
    fit_codebooks(ext.model, _signal(3.0, 24000, 1, seed=1))
    return ext.model


@pytest.fixture(scope="module")
def model48():
    ext = Encodec(EncodecParams(model="48khz", bandwidth=24.0))
    ext.use_random_weights(seed=0)
    fit_codebooks(ext.model, _signal(2.0, 48000, 2, seed=1))
    return ext.model


def _ext(built, **params) -> Encodec:
    return Encodec.from_model(built, Encodec.parse(params))


@pytest.mark.parametrize("params", [
    {"bandwidth": 6.0},
    {"bandwidth": 1.5},
    {"bandwidth": 24.0, "n_codebooks": 3},
    {"bandwidth": 12.0, "codebook": 5},
    {"output": "quantized", "n_codebooks": 4},
    {"output": "latent"},
])
def test_spec_matches_output_24khz(model24, params):
    ext = _ext(model24, model="24khz", **params)
    spec = ext.spec()
    seconds = 2.1
    out = ext(_signal(seconds, 24000), 24000)
    assert out.shape[1] == spec.width
    assert abs(out.shape[0] - seconds * spec.frame_rate) <= 1
    assert (spec.sample_rate, spec.channels, spec.frame_rate) == (24000, 1, 75)
    if spec.kind == "index":
        assert out.dtype == torch.int64
        assert spec.vocab_size == 1024
        assert int(out.min()) >= 0 and int(out.max()) < spec.vocab_size
    else:
        assert out.dtype == torch.float32 and spec.dim == 128
        assert torch.isfinite(out).all()


def test_codebook_counts_follow_bandwidth():
    for bandwidth, k in [(1.5, 2), (3.0, 4), (6.0, 8), (12.0, 16), (24.0, 32)]:
        assert Encodec(EncodecParams(model="24khz", bandwidth=bandwidth)).spec().n_codebooks == k
    for bandwidth, k in [(3.0, 2), (6.0, 4), (12.0, 8), (24.0, 16)]:
        spec = Encodec(EncodecParams(model="48khz", bandwidth=bandwidth)).spec()
        assert (spec.n_codebooks, spec.frame_rate, spec.channels, spec.sample_rate) == (k, 150, 2, 48000)


def test_codes_vary_and_selections_agree(model24):
    wave = _signal(2.0, 24000, seed=3)
    full = _ext(model24, bandwidth=24.0)(wave, 24000)
    assert full.shape[1] == 32
    distinct = [int(full[:, k].unique().numel()) for k in range(32)]
    assert min(distinct) > 20, distinct
    # RVQ is greedy, so fewer codebooks (lower bandwidth) give a prefix of the same codes.
    assert torch.equal(_ext(model24, bandwidth=6.0)(wave, 24000), full[:, :8])
    assert torch.equal(_ext(model24, bandwidth=24.0, n_codebooks=5)(wave, 24000), full[:, :5])
    assert torch.equal(_ext(model24, bandwidth=12.0, codebook=7)(wave, 24000), full[:, 7:8])


def test_every_selection_of_codes_is_cut_from_one_full_extraction(model24):
    wave = _signal(1.0, 24000, seed=4)
    full_ext = _ext(model24, bandwidth=24.0)
    full = full_ext(wave, 24000)
    for params in ({}, {"bandwidth": 1.5}, {"bandwidth": 12.0, "n_codebooks": 3}, {"bandwidth": 6.0, "codebook": 5}):
        ext = _ext(model24, **params)
        source = ext.full()
        # one cache folder for every selection: the full extractor's fingerprint does not depend on it
        assert source.fingerprint() == full_ext.fingerprint() and source.spec().n_codebooks == 32
        assert torch.equal(ext.select(full), ext(wave, 24000)), params
    # quantized and latent outputs are not cut from codes: they are their own cache entries
    assert _ext(model24, output="quantized", n_codebooks=2).full().params.n_codebooks == 2


def test_quantized_is_the_sum_of_codebook_vectors(model24):
    wave = _signal(1.5, 24000, seed=4)
    codes = _ext(model24, bandwidth=6.0, n_codebooks=3)(wave, 24000)
    quantized = _ext(model24, bandwidth=6.0, output="quantized", n_codebooks=3)(wave, 24000)
    layers = model24.quantizer.vq.layers
    expected = sum(layers[k]._codebook.embed[codes[:, k]] for k in range(3))
    torch.testing.assert_close(quantized, expected)
    single = _ext(model24, bandwidth=6.0, output="quantized", codebook=2)(wave, 24000)
    torch.testing.assert_close(single, layers[2]._codebook.embed[codes[:, 2]])


def test_latent_is_the_encoder_output(model24):
    wave = _signal(1.6, 24000, seed=5)
    latent = _ext(model24, output="latent")(wave, 24000)
    n = math.ceil(wave.shape[-1] / 320)
    padded = torch.zeros(1, 1, n * 320)
    padded[0, :, : wave.shape[-1]] = wave
    with torch.no_grad():
        expected = model24.encoder(padded)[0].T
    torch.testing.assert_close(latent, expected)
    # the codes are the nearest codebook entry of that latent
    codes = _ext(model24, n_codebooks=1)(wave, 24000)
    book = model24.quantizer.vq.layers[0]._codebook.embed
    assert torch.equal(codes[:, 0], torch.cdist(latent, book).argmin(dim=1))


def test_deterministic_and_batch_equals_single(model24):
    ext = _ext(model24, bandwidth=6.0)
    waves = [_signal(s, 24000, seed=i) for i, s in enumerate([1.3, 0.7, 2.05])]
    singles = [ext(w, 24000) for w in waves]
    again = [ext(w, 24000) for w in waves]
    batch = ext.extract_batch(waves, 24000)
    for one, two, b, w in zip(singles, again, batch, waves):
        assert torch.equal(one, two)
        assert torch.equal(one, b)
        assert one.shape[0] == math.ceil(w.shape[-1] / 320)


def test_48khz_segments_are_stitched(model48):
    ext = _ext(model48, model="48khz", bandwidth=24.0)
    for seconds in (0.5, 1.0, 2.3):
        wave = _signal(seconds, 48000, channels=2, seed=6)
        out = ext(wave, 48000)
        assert out.dtype == torch.int64 and out.shape == (math.ceil(wave.shape[-1] / 320), 16)
        assert torch.equal(out, ext(wave, 48000))
    frames = model48.encode(wave[None])  # 2.3 s: segments at 0, 0.99 and 1.98 s
    assert len(frames) == 3
    first, second = frames[0][0][0].T, frames[1][0][0].T
    assert first.shape[0] == 150
    # Frames before the first overlap come from segment 0, frames well after it from segment 1,
    # which starts 148.5 frames later (stride 47520 samples).
    assert torch.equal(out[:148], first[:148])
    assert torch.equal(out[150:290], second[1:141])
    assert min(int(out[:, k].unique().numel()) for k in range(16)) > 20
    latent = _ext(model48, model="48khz", output="latent")(wave, 48000)
    assert latent.shape == (out.shape[0], 128) and latent.dtype == torch.float32


def test_48khz_uses_its_own_normalisation(model48):
    ext = _ext(model48, model="48khz", output="latent")
    wave = _signal(0.8, 48000, channels=2, seed=7)
    # one segment, scaled by its RMS inside encode: loudness must not change the latent
    torch.testing.assert_close(ext(wave, 48000), ext(4.0 * wave, 48000), rtol=1e-4, atol=1e-4)


def test_resampled_and_downmixed_input_from_a_file(model24, chirp, write_wav):
    stereo = np.stack([chirp(1.2, 44100), chirp(1.2, 44100, seed=1)])
    path = write_wav(stereo, 44100)
    ext = _ext(model24, bandwidth=3.0)
    spec = ext.spec()
    wave = torch.from_numpy(load_for(path, spec.sample_rate, spec.channels))
    assert wave.shape[0] == 1
    out = ext(wave, spec.sample_rate)
    assert out.shape[1] == 4 and abs(out.shape[0] - 1.2 * 75) <= 1
    # a stereo tensor handed directly is downmixed the same way
    direct = torch.from_numpy(load_for(path, spec.sample_rate, 2))
    assert torch.equal(ext(direct, spec.sample_rate), out)


def test_wrong_sample_rate_is_a_clear_error(model24):
    with pytest.raises(ValueError, match="expects audio at 24000 Hz, got 16000 Hz"):
        _ext(model24)(_signal(0.5, 16000), 16000)


@pytest.mark.parametrize("params, words", [
    ({"bandwidth": 5}, "bandwidth 5 kbps is not offered"),
    ({"model": "48khz", "bandwidth": 1.5}, "choose one of 3, 6, 12, 24"),
    ({"bandwidth": 6, "n_codebooks": 9}, "between 1 and 8"),
    ({"codebook": 8}, "between 0 and 7"),
    ({"codebook": 1, "n_codebooks": 2}, "not both"),
    ({"output": "latent", "n_codebooks": 2}, "not 'latent'"),
    ({"model": "32khz"}, "must be one of"),
    ({"bandwith": 6}, "Did you mean 'bandwidth'"),
])
def test_bad_params_are_clear_errors(params, words):
    with pytest.raises(ConfigError, match=words):
        make_extractor("encodec", params)


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        make_extractor("encodec", {"model": "48khz"}).ensure_loaded()
    msg = str(info.value)
    assert "\n" not in msg
    assert "https://dl.fbaipublicfiles.com/encodec/v0/encodec_48khz-7e698e3e.th" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg and "checkpoint" in msg
    missing = tmp_path / "nowhere.th"
    with pytest.raises(WeightsNotFoundError, match=f"checkpoint not found: {missing}"):
        make_extractor("encodec", {"checkpoint": str(missing)}).ensure_loaded()


def test_local_checkpoint_is_loaded(model24, tmp_path):
    path = tmp_path / "encodec_24khz.th"
    torch.save(model24.state_dict(), path)
    wave = _signal(1.0, 24000, seed=8)
    from_file = make_extractor("encodec", {"checkpoint": str(path)})
    assert torch.equal(from_file(wave, 24000), _ext(model24)(wave, 24000))
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.th")
    with pytest.raises(Exception, match="does not fit the 24khz model"):
        make_extractor("encodec", {"checkpoint": str(tmp_path / "bad.th")}).ensure_loaded()


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "encodec", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'encodec' \(or, in a minecli checkout: pip install -e '\.\[encodec\]'\)"):
        Encodec(EncodecParams()).ensure_loaded()


def test_spec_and_listing_import_no_model_library():
    code = ("import sys; from minecli import make_extractor; "
            "s = make_extractor('encodec', {'model': '48khz', 'output': 'latent'}).spec(); "
            "assert s.dim == 128 and s.frame_rate == 150, s; "
            "from minecli.cli import main; sys.argv = ['minecli', 'plugins', 'list']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('encodec', 's3tokenizer', 'transformers') if m in sys.modules]; assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "encodec" in run.stdout


class _Payload:
    """Not a tensor: unpickling it would run arbitrary code in a hostile file."""


def test_hub_cache_is_read_with_weights_only(model24, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "encodec_24khz-d7cc33bc.th"
    cached.parent.mkdir(parents=True)
    # The real format, a plain state dict of tensors, loads with weights_only=True ...
    torch.save(model24.state_dict(), cached)
    wave = _signal(1.0, 24000, seed=8)
    ext = make_extractor("encodec", {"model": "24khz"})
    assert torch.equal(ext(wave, 24000), _ext(model24)(wave, 24000))
    # ... and a cached file holding any other object is refused instead of unpickled.
    torch.save({"model": _Payload()}, cached)
    with pytest.raises(WeightsNotFoundError, match="Weights only load failed|WeightsUnpickler|Unsupported global"):
        make_extractor("encodec", {"model": "24khz"}).ensure_loaded()

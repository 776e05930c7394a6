"""Mimi extractor on transformers' MimiModel with random weights.

Most tests use a slim Mimi (fewer transformer layers and SEANet filters) that keeps everything the
stream depends on: 24 kHz, 12.5 Hz, 512-d latent, 32 codebooks of 2048 entries, split semantic and
acoustic RVQ. Random Mimi codebooks are all zero, so the fixture draws each stage's codebook from a
Gaussian matched to that stage's input residual.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from minecli import ConfigError, MinecliError, MissingDependencyError, WeightsNotFoundError, make_extractor
from minecli.core.audio import load_for
from minecli.plugins.mimi import Mimi, MimiParams

transformers = pytest.importorskip("transformers")


def _signal(seconds: float, seed: int = 0, rate: int = 24000) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sig = 0.3 * np.sin(2 * np.pi * (100 + 500 * t) * t) * (1.2 + np.sin(2 * np.pi * 2 * t))
    sig += 0.05 * rng.standard_normal(t.shape)
    return torch.from_numpy(sig.astype(np.float32))[None]


def slim_config(**overrides):
    """The kyutai/mimi layout with a lighter encoder and transformer."""
    args = dict(num_filters=16, num_hidden_layers=2, intermediate_size=1024, num_attention_heads=8)
    args.update(overrides)
    return transformers.MimiConfig(**args)


def fit_codebooks(model, waves: list[torch.Tensor], seed: int = 0) -> None:
    """Draw every RVQ stage's codebook from a Gaussian matched to the residual it quantizes."""
    with torch.no_grad():
        latents = torch.cat([model.encoder(w[None]).latents for w in waves], dim=-1)  # [1, 512, T]
    gen = torch.Generator().manual_seed(seed)
    quantizer = model.quantizer
    with torch.no_grad():
        for rvq in (quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer):
            x = rvq.input_proj(latents) if rvq.input_proj is not None else latents
            residual = x[0].T  # [T, 256]
            for layer in rvq.layers:
                book = layer.codebook
                book.embed_sum.copy_(residual.mean(0) + residual.std(0) * torch.randn(book.embed_sum.shape,
                                                                                      generator=gen))
                book.cluster_usage.fill_(1.0)
                book._embed = None  # the codebook caches embed_sum / cluster_usage
                residual = residual - book.decode(book.encode(residual))


@pytest.fixture(scope="module")
def slim():
    torch.manual_seed(0)
    model = transformers.MimiModel(slim_config()).eval()
    fit_codebooks(model, [_signal(3.0, seed=1), _signal(2.0, seed=2)])
    return model


def _ext(model, **params) -> Mimi:
    return Mimi.from_model(model, Mimi.parse(params))


@pytest.mark.parametrize("params", [
    {}, {"n_codebooks": 1}, {"n_codebooks": 32}, {"output": "latent"}, {"output": "quantized", "n_codebooks": 4},
])
def test_spec_matches_output(slim, params):
    ext = _ext(slim, **params)
    spec = ext.spec()
    assert (spec.frame_rate, spec.sample_rate, spec.channels) == (12.5, 24000, 1)
    for seconds in (0.9, 2.5):
        out = ext(_signal(seconds, seed=3), 24000)
        assert out.shape[1] == spec.width
        assert abs(out.shape[0] - seconds * spec.frame_rate) <= 1
        if spec.kind == "index":
            assert out.dtype == torch.int64 and spec.vocab_size == 2048
            assert int(out.min()) >= 0 and int(out.max()) < 2048
        else:
            assert out.dtype == torch.float32 and spec.dim == 512 and torch.isfinite(out).all()


def test_codes_vary_and_prefixes_agree(slim):
    wave = _signal(4.0, seed=5)
    full = _ext(slim, n_codebooks=32)(wave, 24000)
    assert full.shape == (50, 32)
    distinct = [int(full[:, k].unique().numel()) for k in range(32)]
    assert min(distinct) >= 10, distinct
    assert torch.equal(_ext(slim, n_codebooks=8)(wave, 24000), full[:, :8])
    assert torch.equal(_ext(slim, n_codebooks=1)(wave, 24000), full[:, :1])


def test_every_n_codebooks_is_cut_from_one_full_extraction(slim):
    wave = _signal(2.0, seed=7)
    full = _ext(slim, n_codebooks=32)
    codes = full(wave, 24000)
    for k in (1, 8, 31):
        ext = _ext(slim, n_codebooks=k)
        assert ext.full().fingerprint() == full.fingerprint()
        assert torch.equal(ext.select(codes), ext(wave, 24000))
    assert _ext(slim, output="quantized", n_codebooks=4).full().params.n_codebooks == 4


def test_semantic_code_is_nearest_to_the_latent(slim):
    wave = _signal(2.0, seed=6)
    latent = _ext(slim, output="latent")(wave, 24000)
    codes = _ext(slim, n_codebooks=1)(wave, 24000)
    semantic = slim.quantizer.semantic_residual_vector_quantizer
    projected = semantic.input_proj(latent.T[None])[0].T
    nearest = torch.cdist(projected, semantic.layers[0].codebook.embed).argmin(dim=1)
    assert torch.equal(codes[:, 0], nearest)


def test_quantized_decodes_the_codes(slim):
    wave = _signal(1.6, seed=7)
    codes = _ext(slim, n_codebooks=4)(wave, 24000)
    quantized = _ext(slim, output="quantized", n_codebooks=4)(wave, 24000)
    q = slim.quantizer
    sem = q.semantic_residual_vector_quantizer
    aco = q.acoustic_residual_vector_quantizer
    expected = sem.output_proj(sem.layers[0].codebook.embed[codes[:, 0]].T[None])
    expected = expected + aco.output_proj(sum(aco.layers[k - 1].codebook.embed[codes[:, k]] for k in (1, 2, 3)).T[None])
    torch.testing.assert_close(quantized, expected[0].T, rtol=1e-4, atol=1e-5)


def test_batch_equals_single_and_unpadded(slim):
    ext = _ext(slim)
    waves = [_signal(s, seed=i) for i, s in enumerate([1.3, 0.5, 2.7])]
    batch = ext.extract_batch(waves, 24000)
    for wave, b in zip(waves, batch):
        one = ext(wave, 24000)
        assert torch.equal(one, b) and torch.equal(one, ext(wave, 24000))
        assert one.shape[0] == math.ceil(wave.shape[-1] / 1920)
        # Mimi is causal: the whole frames match the model's own encode of the unpadded audio.
        whole = wave.shape[-1] // 1920
        with torch.no_grad():
            native = slim.encode(wave[None], num_quantizers=8).audio_codes[0].T
        assert torch.equal(one[:whole], native[:whole])
    latent = _ext(slim, output="latent")
    for wave, b in zip(waves, latent.extract_batch(waves, 24000)):
        torch.testing.assert_close(b, latent(wave, 24000), rtol=1e-4, atol=1e-4)


def test_default_architecture_with_random_weights():
    ext = Mimi(MimiParams(n_codebooks=32))
    ext.use_random_weights(seed=0)
    assert ext.model.config.num_hidden_layers == 8  # the real kyutai/mimi transformer
    out = ext(_signal(1.0, seed=8), 24000)
    assert out.dtype == torch.int64 and out.shape == (13, 32)


def test_resampled_and_downmixed_input_from_a_file(slim, chirp, write_wav):
    path = write_wav(np.stack([chirp(1.7, 44100), chirp(1.7, 44100, seed=1)]), 44100)
    ext = _ext(slim)
    spec = ext.spec()
    wave = torch.from_numpy(load_for(path, spec.sample_rate, spec.channels))
    out = ext(wave, spec.sample_rate)
    assert abs(out.shape[0] - 1.7 * 12.5) <= 1 and out.shape[1] == 8
    assert torch.equal(ext(torch.from_numpy(load_for(path, spec.sample_rate, 2)), spec.sample_rate), out)


def test_wrong_sample_rate_is_a_clear_error(slim):
    with pytest.raises(ValueError, match="mimi expects audio at 24000 Hz, got 16000 Hz"):
        _ext(slim)(_signal(0.5, rate=16000), 16000)


@pytest.mark.parametrize("params, words", [
    ({"n_codebooks": 0}, "between 1 and 32"),
    ({"n_codebooks": 33}, "between 1 and 32"),
    ({"output": "latents"}, "Did you mean 'latent'"),
    ({"model_id": " "}, "model_id must name"),
    ({"n_codebook": 8}, "Did you mean 'n_codebooks'"),
])
def test_bad_params_are_clear_errors(params, words):
    with pytest.raises(ConfigError, match=words):
        make_extractor("mimi", params)


def test_model_of_another_layout_is_rejected():
    torch.manual_seed(0)
    model = transformers.MimiModel(slim_config(codebook_size=1024, num_quantizers=8))
    with pytest.raises(MinecliError, match=r"codebook_size 1024 \(expected 2048\).*only 8 codebooks"):
        _ext(model, n_codebooks=16).ensure_loaded()


def test_missing_weights_name_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    with pytest.raises(WeightsNotFoundError) as info:
        make_extractor("mimi", {"model_id": "minecli-tests/no-such-mimi"}).ensure_loaded()
    msg = str(info.value)
    assert "\n" not in msg
    for part in ("config.json", "model.safetensors", "https://huggingface.co/minecli-tests/no-such-mimi",
                 str(constants.HF_HUB_CACHE), "checkpoint"):
        assert part in msg, part
    with pytest.raises(WeightsNotFoundError, match=f"{tmp_path} has no config.json"):
        make_extractor("mimi", {"checkpoint": str(tmp_path)}).ensure_loaded()


def test_local_checkpoint_directory_is_loaded(slim, tmp_path):
    slim.save_pretrained(tmp_path)
    wave = _signal(1.5, seed=9)
    from_dir = make_extractor("mimi", {"checkpoint": str(tmp_path), "n_codebooks": 32})
    assert torch.equal(from_dir(wave, 24000), _ext(slim, n_codebooks=32)(wave, 24000))


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[mimi\]'"):
        Mimi(MimiParams()).ensure_loaded()


def test_spec_imports_no_model_library():
    code = ("import sys; from minecli import make_extractor; "
            "s = make_extractor('mimi', {'output': 'latent'}).spec(); "
            "assert (s.dim, s.frame_rate) == (512, 12.5), s; "
            "assert 'transformers' not in sys.modules and 'torch' not in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

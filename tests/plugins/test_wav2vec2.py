"""The wav2vec2 extractor with random weights: torchaudio models and Hugging Face models of the same design."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from minecli import ConfigError, MinecliError, MissingDependencyError, WeightsNotFoundError
from minecli.plugins.wav2vec2 import TORCHAUDIO_BUNDLES, Wav2Vec2, Wav2Vec2Params

SR = 16000
CONV = [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)]


def _tiny_torchaudio(mode: str = "group_norm", wavlm: bool = False) -> torch.nn.Module:
    """The wav2vec 2.0 / WavLM architecture at toy size: same front end and strides, 48-d, 3 layers."""
    from torchaudio import models

    torch.manual_seed(0)
    kwargs = dict(extractor_mode=mode, extractor_conv_layer_config=CONV, extractor_conv_bias=mode == "layer_norm",
                  encoder_embed_dim=48, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=16,
                  encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=4,
                  encoder_attention_dropout=0.1, encoder_ff_interm_features=64, encoder_ff_interm_dropout=0.0,
                  encoder_dropout=0.1, encoder_layer_norm_first=mode == "layer_norm", encoder_layer_drop=0.05,
                  aux_num_out=None)
    if wavlm:
        return models.wavlm_model(**kwargs, encoder_num_buckets=32, encoder_max_distance=64)
    return models.wav2vec2_model(**kwargs)


def _tiny_hf(layer_norm: bool = True) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, codevector_dim=16, proj_codevector_dim=16,
        feat_extract_norm="layer" if layer_norm else "group", do_stable_layer_norm=layer_norm, conv_bias=layer_norm)
    return transformers.Wav2Vec2ForPreTraining(config)


def _extractor(net: torch.nn.Module, **params) -> Wav2Vec2:
    ext = Wav2Vec2(Wav2Vec2Params(**params))
    ext._model = net  # random weights of the real architecture, run through the real code path
    return ext


def _speech_like(seconds: float, chirp) -> torch.Tensor:
    return torch.from_numpy(chirp(seconds, SR))[None]


def _check_against_spec(ext: Wav2Vec2, out: torch.Tensor, seconds: float) -> None:
    spec = ext.spec()
    assert out.shape[1] == spec.width
    assert abs(out.shape[0] - seconds * spec.frame_rate) <= 1
    if spec.kind == "float":
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
    else:
        assert out.dtype == torch.int64 and 0 <= int(out.min()) and int(out.max()) < spec.vocab_size


# ----------------------------------------------------------------------------- torchaudio
def test_base_architecture_with_random_weights(chirp):
    from torchaudio import models

    ext = _extractor(models.wav2vec2_base(), model="WAV2VEC2_BASE", layer=4)
    spec = ext.spec()
    assert (spec.kind, spec.dim, spec.frame_rate, spec.sample_rate) == ("float", 768, 50.0, SR)
    wave = _speech_like(2.0, chirp)
    out = ext(wave, SR)
    _check_against_spec(ext, out, 2.0)
    assert torch.equal(ext(wave, SR), out)
    # Layer 4 is the fourth transformer layer's output, not the last one.
    with torch.inference_mode():
        layers, _ = ext._model.extract_features(wave)
    assert torch.allclose(out, layers[3][0], atol=1e-5) and not torch.allclose(out, layers[-1][0], atol=1e-3)


def test_every_layer_is_cut_from_one_cached_extraction(chirp):
    from torchaudio import models

    net = models.wav2vec2_base()
    wave = _speech_like(1.0, chirp)
    full = _extractor(net, model="WAV2VEC2_BASE", layer=4, cache_all_layers=True).full()
    assert full.params.layer == "all" and full.spec().dim == 12 * 768
    everything = full(wave, SR)
    _check_against_spec(full, everything, 1.0)
    for layer in (1, 4, -1):
        ext = _extractor(net, model="WAV2VEC2_BASE", layer=layer, cache_all_layers=True)
        assert ext.full().fingerprint() == full.fingerprint()
        assert torch.allclose(ext.select(everything), ext(wave, SR), atol=1e-5), layer
    # without the opt-in, each layer is its own cache entry
    plain = _extractor(net, model="WAV2VEC2_BASE", layer=4)
    assert plain.full() is plain and plain.spec().dim == 768


@pytest.mark.parametrize("mode, wavlm", [("group_norm", False), ("layer_norm", False), ("group_norm", True)])
def test_batches_equal_single_utterances(mode, wavlm, chirp):
    ext = _extractor(_tiny_torchaudio(mode, wavlm), model="WAVLM_BASE" if wavlm else "WAV2VEC2_LARGE_LV60K",
                     dim=48, layer=-2)
    waves = [_speech_like(s, chirp) for s in (1.0, 1.7, 0.01)]
    batched = ext.extract_batch(waves, SR)
    assert ext._padding_safe == (mode == "layer_norm")
    for wave, got in zip(waves, batched):
        single = ext(wave, SR)
        assert got.shape == single.shape and torch.allclose(got, single, atol=1e-4)
    assert batched[2].shape == (0, 48)  # shorter than the 25 ms receptive field: no frame
    _check_against_spec(ext, batched[1], 1.7)


def test_stereo_is_downmixed_and_normalisation_follows_the_model(chirp):
    mono = _speech_like(1.0, chirp)
    stereo = torch.cat([mono * 1.5, mono * 0.5])
    ext = _extractor(_tiny_torchaudio("layer_norm"), model="WAV2VEC2_LARGE_LV60K", dim=48)
    assert torch.allclose(ext(stereo, SR), ext(mono, SR), atol=1e-5)
    # LV60K was trained on normalised input, so the level of the input does not matter ...
    assert torch.allclose(ext(mono * 3.0, SR), ext(mono, SR), atol=1e-4)
    # ... while the base model takes the waveform as it is.
    base = _extractor(_tiny_torchaudio("group_norm"), model="WAV2VEC2_BASE", dim=48, normalize=False)
    assert not torch.allclose(base(mono * 3.0, SR), base(mono, SR), atol=1e-3)


def test_local_checkpoint_loads_through_the_real_path(tmp_path, chirp):
    from torchaudio import models

    model = models.hubert_base()
    ckpt = tmp_path / "hubert_fairseq_base_ls960.pth"
    torch.save(model.state_dict(), ckpt)
    wave = _speech_like(1.0, chirp)
    loaded = Wav2Vec2(Wav2Vec2Params(model="HUBERT_BASE", checkpoint=str(ckpt), layer=2))
    injected = _extractor(model, model="HUBERT_BASE", layer=2)
    assert torch.allclose(loaded(wave, SR), injected(wave, SR), atol=1e-5)
    # A file holding another architecture is refused with its name.
    torch.save(_tiny_torchaudio().state_dict(), ckpt)
    with pytest.raises(MinecliError, match=r"hubert_fairseq_base_ls960\.pth does not hold HUBERT_BASE weights"):
        Wav2Vec2(Wav2Vec2Params(model="HUBERT_BASE", checkpoint=str(ckpt))).load()


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch, chirp):
    # No network: every download goes to a closed local port.
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    ext = Wav2Vec2(Wav2Vec2Params(model="wavlm_base_plus", cache_dir=str(tmp_path)))
    with pytest.raises(WeightsNotFoundError) as info:
        ext(_speech_like(0.5, chirp), SR)
    message = str(info.value)
    assert "\n" not in message
    assert "https://download.pytorch.org/torchaudio/models/wavlm_base_plus.pth" in message
    assert str(tmp_path / "wavlm_base_plus.pth") in message
    with pytest.raises(WeightsNotFoundError, match=r"/nowhere/w\.pth not found; download https://\S+wav2vec2_"
                                                  r"fairseq_base_ls960\.pth"):
        Wav2Vec2(Wav2Vec2Params(checkpoint="/nowhere/w.pth")).load()


def test_bundle_table_matches_torchaudio():
    import torchaudio

    for name, (dim, layers, normalize) in TORCHAUDIO_BUNDLES.items():
        bundle = getattr(torchaudio.pipelines, name)
        assert (bundle._params["encoder_embed_dim"], bundle._params["encoder_num_layers"],
                bundle._normalize_waveform) == (dim, layers, normalize), name
        assert Wav2Vec2(Wav2Vec2Params(model=name.lower())).spec().dim == dim


# ----------------------------------------------------------------------------- Hugging Face
def test_hf_hidden_states_and_batches(chirp):
    model = _tiny_hf(layer_norm=True)
    ext = _extractor(model, model="facebook/wav2vec2-large-lv60", dim=32, layer=1)
    waves = [_speech_like(s, chirp) for s in (1.2, 0.6)]
    singles = [ext(w, SR) for w in waves]
    for got, single, seconds in zip(ext.extract_batch(waves, SR), singles, (1.2, 0.6)):
        _check_against_spec(ext, single, seconds)
        assert torch.allclose(got, single, atol=1e-4)
    with torch.inference_mode():
        x = (waves[0] - waves[0].mean()) / torch.sqrt(waves[0].var(unbiased=False) + 1e-7)
        hidden = model.wav2vec2(x, output_hidden_states=True).hidden_states
    assert torch.allclose(singles[0], hidden[1][0], atol=1e-5)


def test_hf_every_layer_is_cut_from_one_cached_extraction(tmp_path, chirp):
    model = _tiny_hf(layer_norm=True)
    (tmp_path / "config.json").write_text(model.config.to_json_string())  # sizes the stream without loading
    wave = _speech_like(0.8, chirp)
    full = _extractor(model, model="tiny", backend="hf", checkpoint=str(tmp_path), layer=2, cache_all_layers=True).full()
    assert full.spec().dim == 2 * 32
    everything = full(wave, SR)
    for layer in (1, 2, -2):
        ext = _extractor(model, model="tiny", backend="hf", checkpoint=str(tmp_path), layer=layer, cache_all_layers=True)
        assert torch.allclose(ext.select(everything), ext(wave, SR), atol=1e-5), layer


@pytest.mark.parametrize("output", ["codes", "joint_code"])
def test_quantizer_codes_are_the_quantizers_own_choice(output, chirp):
    model = _tiny_hf(layer_norm=False).eval()
    ext = _extractor(model, model="facebook/wav2vec2-base", output=output)
    spec = ext.spec()
    assert spec.kind == "index"
    assert (spec.vocab_size, spec.n_codebooks) == ((320, 2) if output == "codes" else (320 * 320, 1))
    wave = _speech_like(1.5, chirp)
    codes = ext(wave, SR)
    _check_against_spec(ext, codes, 1.5)
    assert torch.equal(ext(wave, SR), codes)
    assert codes.unique(dim=0).shape[0] > 10
    pairs = codes if output == "codes" else torch.stack([codes[:, 0] // 320, codes[:, 0] % 320], dim=1)
    # The codevectors picked by these indices are exactly what the model's quantizer outputs.
    with torch.inference_mode():
        features = model.wav2vec2(wave, output_hidden_states=False).extract_features
        quantized, _ = model.quantizer(features)
        table = model.quantizer.codevectors[0].view(2, 320, -1)
        rebuilt = torch.cat([table[0, pairs[:, 0]], table[1, pairs[:, 1]]], dim=-1)
    assert torch.allclose(rebuilt, quantized[0], atol=1e-5)


def test_hf_local_directory_and_missing_weights(tmp_path, chirp):
    model = _tiny_hf(layer_norm=False)
    model.save_pretrained(tmp_path / "w2v")
    wave = _speech_like(1.0, chirp)
    loaded = Wav2Vec2(Wav2Vec2Params(model="facebook/wav2vec2-base", checkpoint=str(tmp_path / "w2v"),
                                     output="codes"))
    assert torch.equal(loaded(wave, SR), _extractor(model, model="facebook/wav2vec2-base", output="codes")(wave, SR))
    # A local config.json also sizes the stream before anything is loaded.
    assert Wav2Vec2(Wav2Vec2Params(model="me/tiny", checkpoint=str(tmp_path / "w2v"))).spec().dim == 32
    # HF_HUB_OFFLINE=1 (conftest) and an empty cache: the error names the model and what to fetch.
    ext = Wav2Vec2(Wav2Vec2Params(model="facebook/wav2vec2-base", cache_dir=str(tmp_path / "hub")))
    with pytest.raises(WeightsNotFoundError) as info:
        ext(wave, SR)
    message = str(info.value)
    assert "\n" not in message and "https://huggingface.co/facebook/wav2vec2-base" in message
    assert "model.safetensors" in message and str(tmp_path / "hub") in message


def test_missing_transformers_names_the_extra(monkeypatch, chirp):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"'transformers'.*pip install -e '\.\[hf\]'"):
        Wav2Vec2(Wav2Vec2Params(model="microsoft/wavlm-base-plus"))(_speech_like(0.5, chirp), SR)


def test_hubert_has_no_quantizer():
    transformers = pytest.importorskip("transformers")
    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=4)
    ext = _extractor(transformers.HubertModel(config), model="facebook/hubert-base-ls960", output="codes")
    with pytest.raises(MinecliError, match="has no quantizer"):
        ext.load()


# ----------------------------------------------------------------------------- params and errors
@pytest.mark.parametrize("bad, message", [
    ({"layer": 0}, "0 is not a layer"),
    ({"layer": 13}, "WAV2VEC2_BASE has 12 layers"),
    ({"model": "WAV2VEC2_BASSE"}, "unknown torchaudio bundle 'WAV2VEC2_BASSE'"),
    ({"output": "codes"}, "only Hugging Face pretraining checkpoints"),
    ({"output": "tokens"}, "must be one of 'hidden', 'codes', 'joint_code'"),
    ({"model": "facebook/wav2vec2-base", "dim": -3}, "dim must be a positive integer"),
])
def test_bad_params_are_clear_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        Wav2Vec2.parse(bad)


def test_runtime_checks(chirp):
    wave = _speech_like(0.5, chirp)
    with pytest.raises(ValueError, match="expects audio at 16000 Hz, got 24000 Hz"):
        _extractor(_tiny_torchaudio(), dim=48)(wave, 24000)
    with pytest.raises(MinecliError, match="has 48-d hidden states but the stream was declared 768-d; set dim: 48"):
        _extractor(_tiny_torchaudio())(wave, SR)
    with pytest.raises(MinecliError, match=r"layer -4 does not exist; .* 3 transformer layers"):
        _extractor(_tiny_torchaudio(), dim=48, layer=-4)(wave, SR)
    with pytest.raises(ValueError, match="set dim"):
        Wav2Vec2(Wav2Vec2Params(model="someone/unknown-model")).spec()


def test_spec_imports_no_model_library():
    code = ("import sys; from minecli import get_registry; cls = get_registry().get('extractor', 'wav2vec2').obj; "
            "specs = [cls(cls.parse(p)).spec().describe() for p in ({}, {'model': 'facebook/hubert-large-ll60k'}, "
            "{'model': 'facebook/wav2vec2-base', 'output': 'codes'})]; "
            "print('|'.join(specs), any(m in sys.modules for m in ('transformers', 'torchaudio', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "float 768-d @ 50 Hz|float 1024-d @ 50 Hz|index 2x320 @ 50 Hz False"


class _Payload:
    """Not a tensor: unpickling it would run arbitrary code in a hostile file."""


def test_hub_cache_is_read_with_weights_only(tmp_path, chirp):
    # A cached download holding anything but tensors is refused instead of unpickled.
    torch.save({"model": _Payload()}, tmp_path / "wavlm_base_plus.pth")
    ext = Wav2Vec2(Wav2Vec2Params(model="wavlm_base_plus", cache_dir=str(tmp_path)))
    with pytest.raises(WeightsNotFoundError, match="Weights only load failed|WeightsUnpickler|Unsupported global"):
        ext(_speech_like(0.5, chirp), SR)


def test_the_device_never_changes_the_cache_key():
    import hashlib
    import json
    from dataclasses import asdict

    default = Wav2Vec2(Wav2Vec2Params())
    # the key the cache had when device was a param defaulting to 'cpu'
    params = {**asdict(default.params), "device": "cpu"}
    old = hashlib.sha256(json.dumps({"name": "wav2vec2", "version": default.version, "params": params},
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert default.fingerprint() == old
    assert Wav2Vec2(Wav2Vec2Params(device="cuda:1")).fingerprint() == old
    assert Wav2Vec2(Wav2Vec2Params(layer=3)).fingerprint() != old

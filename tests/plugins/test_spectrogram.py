"""Spectrogram extractors on very short input: no torch padding error, frames as for longer input."""
from __future__ import annotations

import pytest
import torch

from minecli import make_extractor


@pytest.mark.parametrize("name", ["mel", "complex_spec"])
def test_short_input_gives_one_frame_per_hop(name):
    ext = make_extractor(name, {"n_fft": 512, "frame_rate": 100})
    width = ext.spec().width
    for n in (0, 1, 100, 160, 256, 257, 511, 1600):
        out = ext(torch.randn(1, n, generator=torch.Generator().manual_seed(n)), 16000)
        assert out.shape == ((1 + n // 160) if n else 0, width), n
        assert torch.isfinite(out).all()


def _centred_reference(ext, x):
    """The torchaudio transform with its own centring, on one utterance (what minecli computed before batching)."""
    import torchaudio

    p = ext.params
    if ext.name == "mel":
        tf = torchaudio.transforms.MelSpectrogram(sample_rate=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop,
                                                  n_mels=p.n_mels, power=p.power, center=True)
        return torch.log(torch.clamp(tf(x), min=p.log_floor)).T.contiguous().float()
    raw = torchaudio.transforms.Spectrogram(n_fft=p.n_fft, hop_length=p.hop, power=None, center=True)(x)
    return torch.cat([raw.real, raw.imag], dim=0).T.contiguous().float()


@pytest.mark.parametrize("name", ["mel", "complex_spec"])
def test_input_long_enough_for_reflect_padding_is_unchanged(name):
    ext = make_extractor(name, {"n_fft": 512})
    x = torch.randn(1, 3000, generator=torch.Generator().manual_seed(0))
    # One utterance: the padding done by hand and torch's own centring give the same bits, so
    # features extracted before batching existed are exactly what extraction gives now.
    assert torch.equal(ext(x, 16000), _centred_reference(ext, x[0]))


@pytest.mark.parametrize("name", ["mel", "complex_spec"])
@pytest.mark.parametrize("center", [True, False])
def test_batch_equals_single_utterances(name, center):
    ext = make_extractor(name, {"n_fft": 400, "frame_rate": 100, "center": center})
    gen = torch.Generator().manual_seed(1)
    waves = [torch.randn(1, n, generator=gen) for n in (4000, 150, 2999, 0, 401, 7777)]
    batched = ext.extract_batch(waves, 16000)
    for wave, got in zip(waves, batched):
        alone = ext(wave, 16000)
        assert got.shape == alone.shape
        # Padding only follows each utterance's last window, so no frame sees it: equal to rounding.
        assert torch.allclose(got, alone, rtol=1e-5, atol=1e-5)
        if center and wave.shape[-1] > 200:
            assert torch.allclose(got, _centred_reference(ext, wave[0]), rtol=1e-5, atol=1e-5)
    assert batched[0].shape[0] == 1 + 4000 // 160 if center else 1 + (4000 - 400) // 160


def test_uncentred_frames_need_a_whole_window():
    ext = make_extractor("mel", {"n_fft": 512, "center": False})
    assert ext(torch.randn(1, 511), 16000).shape == (0, 80)
    assert ext(torch.randn(1, 512), 16000).shape == (1, 80)

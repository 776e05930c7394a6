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


@pytest.mark.parametrize("name", ["mel", "complex_spec"])
def test_input_long_enough_for_reflect_padding_is_unchanged(name):
    ext = make_extractor(name, {"n_fft": 512})
    ext.ensure_loaded()
    x = torch.randn(1, 3000, generator=torch.Generator().manual_seed(0))
    raw = ext._tf(x[0])
    if name == "mel":
        expected = torch.log(torch.clamp(raw, min=ext.params.log_floor)).T
    else:
        expected = torch.cat([raw.real, raw.imag], dim=0).T
    assert torch.equal(ext(x, 16000), expected.contiguous().float())


def test_uncentred_frames_need_a_whole_window():
    ext = make_extractor("mel", {"n_fft": 512, "center": False})
    assert ext(torch.randn(1, 511), 16000).shape == (0, 80)
    assert ext(torch.randn(1, 512), 16000).shape == (1, 80)

"""minecli.testing catches each way an extractor can break the contract, with a message naming it."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from minecli import Extractor, MinecliError, StreamSpec
from minecli.testing import MODEL_LIBRARIES, check_extractor, make_chirp

RATE = 16000
FRAME_RATE = 50.0


class Good(Extractor):
    """Frame energies at 50 Hz: keeps every rule; the fakes below each break one."""

    name = "good"
    frame_tolerance = 1.0

    def spec(self) -> StreamSpec:
        return StreamSpec("float", FRAME_RATE, dim=2, sample_rate=RATE)

    def check_rate(self, sample_rate: int) -> None:
        if sample_rate != RATE:
            raise ValueError(f"{self.name} expects audio at {RATE} Hz, got {sample_rate} Hz")

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        hop = int(RATE / FRAME_RATE)
        x = wave.mean(dim=0)
        n = int(round(x.shape[-1] / hop))
        x = torch.nn.functional.pad(x, (0, max(0, n * hop - x.shape[-1])))[: n * hop].reshape(n, hop)
        return torch.stack([x.pow(2).mean(dim=1), x.abs().max(dim=1).values], dim=1)

    def __call__(self, wave, sample_rate, path=None):
        self.check_rate(sample_rate)
        return self.frames(wave)


def test_a_good_extractor_passes_and_reports_what_it_saw():
    report = check_extractor(extractor=Good())
    assert report.name == "good"
    assert report.spec.dim == 2
    assert report.frames == 50 and report.expected_frames == 50.0
    assert report.edge_cases["silence"] == "ok (50 frames)"
    assert report.edge_cases["short"] == "ok (0 frames)"
    assert report.edge_cases["wrong_rate"].startswith("error: ValueError: good expects audio at 16000 Hz")


def test_make_chirp_is_deterministic_and_shaped():
    a = make_chirp(0.5, 8000, channels=2, seed=3)
    assert a.shape == (2, 4000) and a.dtype == np.float32
    assert np.array_equal(a, make_chirp(0.5, 8000, channels=2, seed=3))
    assert not np.array_equal(a[0], a[1])


class WrongWidth(Good):
    name = "wrong_width"

    def __call__(self, wave, sample_rate, path=None):
        return super().__call__(wave, sample_rate)[:, :1]


class WrongDtype(Good):
    name = "wrong_dtype"

    def __call__(self, wave, sample_rate, path=None):
        return super().__call__(wave, sample_rate).double()


class OneDim(Good):
    name = "one_dim"

    def __call__(self, wave, sample_rate, path=None):
        return super().__call__(wave, sample_rate)[:, 0]


class HasNaN(Good):
    name = "has_nan"

    def __call__(self, wave, sample_rate, path=None):
        out = super().__call__(wave, sample_rate)
        return torch.log(out[:, :1] - out[:, :1]).expand(-1, 2).contiguous() if out.shape[0] else out


class TooManyFrames(Good):
    name = "too_many_frames"

    def __call__(self, wave, sample_rate, path=None):
        out = super().__call__(wave, sample_rate)
        return torch.cat([out, out[:3]]) if out.shape[0] else out


class Random(Good):
    name = "random"

    def __call__(self, wave, sample_rate, path=None):
        out = super().__call__(wave, sample_rate)
        return out + 0.01 * torch.rand_like(out)


class BadBatch(Good):
    name = "bad_batch"

    def extract_batch(self, waves, sample_rate, paths=None):
        # pads everything to the longest utterance and forgets to cut the padding off
        longest = max(w.shape[-1] for w in waves)
        return [self(torch.nn.functional.pad(w, (0, longest - w.shape[-1])), sample_rate) for w in waves]


class BatchLeaks(Good):
    name = "batch_leaks"

    def extract_batch(self, waves, sample_rate, paths=None):
        # normalises by the batch's loudest sample: each output depends on the other utterances
        peak = max(float(w.abs().max()) for w in waves)
        return [self(w / peak, sample_rate) for w in waves]


class CrashesOnShort(Good):
    name = "crashes_on_short"

    def __call__(self, wave, sample_rate, path=None):
        self.check_rate(sample_rate)
        torch.stft(wave.mean(dim=0), n_fft=512, window=torch.hann_window(512), return_complex=True)  # reflect padding refuses short input
        return self.frames(wave)


class ClearOnShort(Good):
    name = "clear_on_short"

    def __call__(self, wave, sample_rate, path=None):
        self.check_rate(sample_rate)
        if wave.shape[-1] < 512:
            raise MinecliError(f"clear_on_short needs at least 512 samples, got {wave.shape[-1]}")
        return self.frames(wave)


class AcceptsAnyRate(Good):
    name = "accepts_any_rate"

    def check_rate(self, sample_rate: int) -> None:
        pass


class VagueRate(Good):
    name = "vague_rate"

    def check_rate(self, sample_rate: int) -> None:
        if sample_rate != RATE:
            raise ValueError("wrong sample rate")


class IndexOutOfVocab(Good):
    name = "index_out_of_vocab"

    def spec(self) -> StreamSpec:
        return StreamSpec("index", FRAME_RATE, vocab_size=4, sample_rate=RATE)

    def __call__(self, wave, sample_rate, path=None):
        n = super().__call__(wave, sample_rate).shape[0]
        return torch.arange(n, dtype=torch.int64).view(-1, 1)  # ids 0..n-1, far past 4


class UnstableFingerprint(Good):
    name = "unstable_fingerprint"
    calls = 0

    def fingerprint(self) -> str:
        type(self).calls += 1
        return f"fp{type(self).calls}"


@pytest.mark.parametrize("cls, message", [
    (WrongWidth, "returned 1 columns, but spec().dim is 2"),
    (WrongDtype, "returned torch.float64; a float stream must be torch.float32"),
    (OneDim, "the contract is [frames, dim]"),
    (HasNaN, "NaN or infinite values"),
    (TooManyFrames, "53 frames for 1 s at 50 Hz, expected 50 +- 1"),
    (Random, "two calls on the same audio gave different outputs"),
    (BadBatch, "extract_batch item 1: 50 frames for 0.6 s at 50 Hz, expected 30 +- 1"),
    (BatchLeaks, "extract_batch item 0 (1 s) differs from calling the extractor on it alone"),
    (CrashesOnShort, "short audio (10 ms): raised RuntimeError"),
    (AcceptsAnyRate, "audio at 8000 Hz was accepted although spec().sample_rate is 16000"),
    (VagueRate, "the message must name the rate expected (16000) and the rate given (8000)"),
    (IndexOutOfVocab, "token ids span [0, 49], outside [0, 4)"),
    (UnstableFingerprint, "fingerprint() changes between calls"),
], ids=lambda v: v.name if isinstance(v, type) else "")
def test_each_broken_rule_is_named(cls, message):
    with pytest.raises(AssertionError) as info:
        check_extractor(extractor=cls())
    assert message in str(info.value)
    assert str(info.value).startswith(f"extractor '{cls.name}': ")


def test_a_clear_error_on_short_audio_is_accepted():
    report = check_extractor(extractor=ClearOnShort())
    assert report.edge_cases["short"] == "error: MinecliError: clear_on_short needs at least 512 samples, got 160"


def test_the_frame_tolerance_can_be_declared_or_given():
    class Padded(TooManyFrames):
        name = "padded"
        frame_tolerance = 3

    assert check_extractor(extractor=Padded()).frame_tolerance == 3.0
    assert check_extractor(extractor=TooManyFrames(), frame_tolerance=3).frames == 53


def test_spec_that_imports_a_model_library_is_caught(monkeypatch):
    fake = types.ModuleType("transformers")
    monkeypatch.setitem(sys.modules, "transformers", fake)  # already loaded: only the import statement shows

    class HeavySpec(Good):
        name = "heavy_spec"

        def spec(self) -> StreamSpec:
            import transformers  # noqa: F401

            return super().spec()

    assert "transformers" in MODEL_LIBRARIES
    with pytest.raises(AssertionError, match=r"computing spec\(\) imported transformers; spec\(\) must be computable"):
        check_extractor(extractor=HeavySpec())


def test_prepare_and_setup_are_used():
    seen: dict[str, list] = {"prepared": [], "files": []}

    class NeedsSideFile(Good):
        name = "needs_side_file"
        needs_path = True

        def __call__(self, wave, sample_rate, path=None):
            if path is None or not path.endswith(".side"):
                raise MinecliError(f"needs_side_file: no side file for {path}")
            return super().__call__(wave, sample_rate)

    def setup(audio: str, wave: np.ndarray, rate: int) -> str:
        side = audio + ".side"
        open(side, "w").close()
        seen["files"].append(side)
        return side

    check_extractor(extractor=NeedsSideFile(), prepare=lambda e: seen["prepared"].append(e.name), setup=setup)
    assert seen["prepared"] == ["needs_side_file"]
    assert len(seen["files"]) >= 6  # train files, two chirps, silence, short audio, wrong rate
    with pytest.raises(AssertionError, match="no side file for"):
        check_extractor(extractor=NeedsSideFile())


def test_name_and_params_build_through_the_registry():
    report = check_extractor("mel", {"n_mels": 12, "frame_rate": 50})
    assert report.spec == StreamSpec("float", 50.0, dim=12, sample_rate=16000)
    with pytest.raises(AssertionError, match="unknown key 'params.n_mel'"):
        check_extractor("mel", {"n_mel": 12})
    with pytest.raises(TypeError, match="not both"):
        check_extractor("mel", {"n_mels": 12}, extractor=Good())

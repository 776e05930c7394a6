"""The phones extractor: TextGrid parsing and framing, phone maps, and pocketsphinx on real speech."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minecli import ConfigError, MinecliError, MissingDependencyError
from minecli.plugins.phones import (ARPABET, Phones, PhonesParams, arpabet_map, parse_textgrid, read_phone_map,
                                    write_textgrid)

DATA = Path(__file__).resolve().parents[1] / "data"
# A LibriVox clip (public domain) from pocketsphinx's own test data, its transcript, and the phone
# alignment pocketsphinx's command-line aligner produced for it, converted with its to_textgrid.
CLIP = DATA / "librivox-0880.flac"
CLIP_SECONDS = 2.99
SR = 16000

# Frame counts at 100 Hz of each interval below, written by hand: frame centres never fall on a boundary.
INTERVALS = [(0.0, 0.1, ""), (0.1, 0.3, "HH"), (0.3, 0.5, "AH1"), (0.5, 0.62, "sp"), (0.62, 0.9, "L")]
COUNTS_100 = [("sil", 10), ("HH", 20), ("AH", 20), ("sil", 12), ("L", 28), ("sil", 10)]
COUNTS_50 = [("sil", 5), ("HH", 10), ("AH", 10), ("sil", 6), ("L", 14), ("sil", 5)]


def _expected(counts: list[tuple[str, int]]) -> list[int]:
    ids = arpabet_map()
    return [ids[label] for label, n in counts for _ in range(n)]


def _clip() -> tuple[torch.Tensor, int]:
    import soundfile as sf

    data, rate = sf.read(str(CLIP), dtype="float32")
    return torch.from_numpy(data)[None], rate


def _utterance(tmp_path: Path, write_wav, chirp, seconds: float = 1.0,
               name: str = "utt.wav") -> tuple[str, torch.Tensor]:
    wave = chirp(seconds, SR)
    path = write_wav(wave, SR, name)
    return path, torch.from_numpy(wave)[None]


# ----------------------------------------------------------------------------- TextGrid
def test_textgrid_round_trip_gives_exact_frame_labels(tmp_path, write_wav, chirp):
    path, wave = _utterance(tmp_path, write_wav, chirp)
    write_textgrid(tmp_path / "utt.TextGrid", {"words": [(0.0, 1.0, "hello")], "phones": INTERVALS}, xmax=1.0)
    for rate, counts in ((100.0, COUNTS_100), (50.0, COUNTS_50)):
        ext = Phones(PhonesParams(frame_rate=rate))
        out = ext(wave, SR, path=path)
        spec = ext.spec()
        assert out.dtype == torch.int64 and out.shape == (int(round(rate)), 1) and spec.width == 1
        assert out[:, 0].tolist() == _expected(counts)
        assert spec.frame_rate == rate and spec.vocab_size == len(ARPABET) + 2 and int(out.max()) < spec.vocab_size


def test_short_format_and_utf16_parse_like_the_long_format(tmp_path):
    long_path = tmp_path / "long.TextGrid"
    write_textgrid(long_path, {"phones": [(0.0, 0.25, ""), (0.25, 0.5, 'say "hi"'), (0.5, 0.8, "ɑː")]})
    # Praat's short text format: the same header, then bare values.
    short = "\n".join(['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", "0.8", "<exists>", "1",
                       '"IntervalTier"', '"phones"', "0", "0.8", "3", "0", "0.25", '""', "0.25", "0.5",
                       '"say ""hi"""', "0.5", "0.8", '"ɑː"'])
    short_path = tmp_path / "short.TextGrid"
    short_path.write_text(short, encoding="utf-8")
    utf16_path = tmp_path / "utf16.TextGrid"
    utf16_path.write_bytes(long_path.read_text(encoding="utf-8").encode("utf-16"))
    expected = [(0.0, 0.25, ""), (0.25, 0.5, 'say "hi"'), (0.5, 0.8, "ɑː")]
    for p in (long_path, short_path, utf16_path):
        assert parse_textgrid(p) == {"phones": expected}


def test_textgrid_written_by_pocketsphinx_is_read():
    tiers = parse_textgrid(DATA / "librivox-0880.TextGrid")
    assert list(tiers) == ["words", "phones"]
    phones = tiers["phones"]
    assert phones[0] == (0.0, 0.21, "SIL") and phones[1] == (0.21, 0.27, "HH")
    assert phones[-1][1] == pytest.approx(CLIP_SECONDS)
    assert all(a < b for a, b, _ in phones) and all(x[1] == y[0] for x, y in zip(phones, phones[1:]))


def test_textgrid_found_in_a_directory_tree_and_errors_name_the_file(tmp_path, write_wav, chirp):
    path, wave = _utterance(tmp_path, write_wav, chirp)
    with pytest.raises(MinecliError, match=r"utt\.TextGrid"):
        Phones()(wave, SR, path=path)
    aligned = tmp_path / "aligned" / "speaker1"
    aligned.mkdir(parents=True)
    write_textgrid(aligned / "utt.TextGrid", {"phones": INTERVALS}, xmax=1.0)
    out = Phones(PhonesParams(textgrid_dir=str(tmp_path / "aligned")))(wave, SR, path=path)
    assert out[:, 0].tolist() == _expected(COUNTS_100)
    with pytest.raises(MinecliError, match=r"no interval tier 'segments'.*'phones'"):
        Phones(PhonesParams(textgrid_dir=str(tmp_path / "aligned"), tier="segments"))(wave, SR, path=path)
    with pytest.raises(ValueError, match="audio path"):
        Phones()(wave, SR)


def test_textgrid_of_another_length_is_rejected(tmp_path, write_wav, chirp):
    path, wave = _utterance(tmp_path, write_wav, chirp, seconds=2.0)
    write_textgrid(tmp_path / "utt.TextGrid", {"phones": INTERVALS}, xmax=0.9)
    with pytest.raises(MinecliError, match=r"lasts 0\.90 s .* lasts 2\.00 s"):
        Phones()(wave, SR, path=path)
    out = Phones(PhonesParams(max_duration_diff=2.0))(wave, SR, path=path)
    assert out.shape == (200, 1) and (out[90:] == 0).all()


# ----------------------------------------------------------------------------- phone maps
def test_phone_map_file_and_unknown_labels(tmp_path, write_wav, chirp):
    path, wave = _utterance(tmp_path, write_wav, chirp)
    write_textgrid(tmp_path / "utt.TextGrid", {"phones": INTERVALS}, xmax=1.0)
    mapping = tmp_path / "phones.map"
    mapping.write_text("# shared ids are allowed\nsil 0\nHH 3\nAH 5\nL 5\n")
    ext = Phones(PhonesParams(phone_set="file", phone_map=str(mapping)))
    assert ext.spec().vocab_size == 6
    out = ext(wave, SR, path=path)[:, 0].tolist()
    assert out == [0] * 10 + [3] * 20 + [5] * 20 + [0] * 12 + [5] * 28 + [0] * 10
    mapping.write_text("sil\nHH\nAH\n")
    with pytest.raises(MinecliError, match=r"'L' .*not in the file phone set"):
        Phones(PhonesParams(phone_set="file", phone_map=str(mapping)))(wave, SR, path=path)
    assert read_phone_map(mapping) == {"sil": 0, "HH": 1, "AH": 2}


def test_ipa_labels_are_refused_by_arpabet_and_mapped_from_data(tmp_path, write_wav, chirp):
    paths = []
    for i, labels in enumerate([["", "h", "ə", "l"], ["spn", "ə", "ʊ", ""]]):
        path, wave = _utterance(tmp_path, write_wav, chirp, name=f"u{i}.wav")
        write_textgrid(tmp_path / f"u{i}.TextGrid", {"phones": [(k * 0.25, (k + 1) * 0.25, lab)
                                                                for k, lab in enumerate(labels)]})
        paths.append(path)
    with pytest.raises(MinecliError, match=r"'h'.*phone_set: data"):
        Phones()(wave, SR, path=paths[0])
    ext = Phones(PhonesParams(phone_set="data", vocab_size=8))
    ext.fit(paths[:1], str(tmp_path / "cache"))  # train split: u0 only
    saved = list((tmp_path / "cache").glob("phones-*.map"))
    assert len(saved) == 1 and read_phone_map(saved[0]) == {"sil": 0, "spn": 1, "h": 2, "l": 3, "ə": 4}
    # The cache key follows the map learnt from the data, not only the params.
    other = Phones(PhonesParams(phone_set="data", vocab_size=8))
    other.fit(paths[1:], str(tmp_path / "cache2"))
    assert other.fingerprint() != ext.fingerprint()
    out = ext(wave, SR, path=paths[1])[:, 0].tolist()
    # spn and the unseen 'ʊ' both become spn (1); silence is 0.
    assert out == [1] * 25 + [4] * 25 + [1] * 25 + [0] * 25
    assert ext.spec().vocab_size == 8
    with pytest.raises(MinecliError, match="raise vocab_size to at least 5"):
        Phones(PhonesParams(phone_set="data", vocab_size=4)).fit(paths[:1], str(tmp_path / "cache"))


@pytest.mark.parametrize("bad, message", [
    ({"phone_set": "file"}, "needs phone_map"),
    ({"phone_set": "data"}, "needs vocab_size"),
    ({"phone_map": "x.map"}, "only read with phone_set: file"),
    ({"frame_rate": 0}, "frame_rate must be positive"),
    ({"source": "pocketsphinx", "sample_rate": 8000}, "needs sample_rate 16000"),
    ({"source": "pocketsphinx", "phone_set": "data", "vocab_size": 50}, "use phone_set: arpabet"),
    ({"pocketsphinx_mode": "viterbi"}, "must be one of 'decode', 'align'"),
])
def test_bad_params_are_clear_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        Phones.parse(bad)


def test_wrong_sample_rate_is_an_error(tmp_path, write_wav, chirp):
    path, wave = _utterance(tmp_path, write_wav, chirp)
    with pytest.raises(ValueError, match="expects audio at 16000 Hz, got 24000 Hz"):
        Phones()(wave, 24000, path=path)


# ----------------------------------------------------------------------------- pocketsphinx
def test_pocketsphinx_decodes_real_speech():
    wave, rate = _clip()
    ext = Phones(PhonesParams(source="pocketsphinx"))
    out = ext(wave, rate, path=str(CLIP))
    spec = ext.spec()
    labels = out[:, 0]
    assert out.dtype == torch.int64 and out.shape == (round(CLIP_SECONDS * spec.frame_rate), 1)
    assert 0 <= int(labels.min()) and int(labels.max()) < spec.vocab_size
    assert labels.unique().numel() >= 10
    # The clip starts and ends with a pause.
    assert (labels[:5] == 0).all() and (labels[-5:] == 0).all()
    assert 0.03 < float((labels == 0).float().mean()) < 0.5
    # Deterministic, also after other audio went through the same decoder.
    ext(torch.from_numpy(np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1)[None], SR)
    assert torch.equal(ext(wave, rate, path=str(CLIP)), out)


def test_pocketsphinx_alignment_matches_the_reference_alignment(tmp_path):
    wave, rate = _clip()
    ext = Phones(PhonesParams(source="pocketsphinx", pocketsphinx_mode="align"))
    out = ext(wave, rate, path=str(CLIP))[:, 0]
    reference = Phones()(wave, rate, path=str(CLIP))[:, 0]  # reads librivox-0880.TextGrid beside the clip
    assert out.shape == reference.shape == (299,)
    assert float((out == reference).float().mean()) > 0.85
    # Silence frames are the quiet ones: the labels follow the audio.
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=400, hop_length=160, n_mels=40, center=False)(wave[0])
    energy = torch.log(mel.clamp_min(1e-8)).mean(0)[: out.numel()]
    n = energy.numel()
    assert float(energy[out[:n] == 0].mean()) < float(energy[out[:n] != 0].mean()) - 2.0
    # Without a transcript, align says where it looked.
    lone = tmp_path / "lone.flac"
    shutil.copy(CLIP, lone)
    with pytest.raises(MinecliError, match=r"lone\.txt"):
        ext(wave, rate, path=str(lone))


def test_missing_pocketsphinx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    wave, rate = _clip()
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[phones\]'"):
        Phones(PhonesParams(source="pocketsphinx"))(wave, rate, path=str(CLIP))


def test_spec_and_registration_import_no_model_library():
    code = ("import sys; from minecli import get_registry; reg = get_registry(); "
            "cls = reg.get('extractor', 'phones').obj; "
            "print(cls(cls.Params()).spec().describe(), 'pocketsphinx' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ["False", "False"] and "41" in out

"""Editing a file an extractor reads besides the audio (a TextGrid, a transcript) re-extracts it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from minecli import Extractor, StreamSpec
from minecli.core.pipeline import extract_all, load_side, prepare


class LabelFromSideFile(Extractor):
    """Every frame carries the integer written in <stem>.lab beside the audio."""

    name = "side_label"
    needs_path = True

    def spec(self) -> StreamSpec:
        return StreamSpec("index", 100.0, vocab_size=10, sample_rate=16000)

    def input_files(self, path: str) -> list[str]:
        return [str(Path(path).with_suffix(".lab"))]

    def __call__(self, wave, sample_rate, path=None):
        label = int(Path(self.input_files(path)[0]).read_text())
        return torch.full((1 + wave.shape[1] // 160, 1), label, dtype=torch.long)


@pytest.fixture
def side_plugin(register_extractors):
    register_extractors("side", LabelFromSideFile)


def test_editing_a_side_file_re_extracts_only_that_utterance(side_plugin, audio_dataset, run_config_file):
    for files in audio_dataset["files"].values():
        for f in files:
            f.with_suffix(".lab").write_text("3")
    config = run_config_file(x={"extractor": "side_label", "params": {}})
    first = extract_all(prepare(config), ("x",), progress=False)
    assert first["x"]["cached"] == 0
    assert extract_all(prepare(config), ("x",), progress=False)["x"]["extracted"] == 0

    edited = audio_dataset["files"]["train"][0].with_suffix(".lab")
    edited.write_text("7")
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    prep = prepare(config)
    again = extract_all(prep, ("x",), progress=False)
    assert again["x"]["extracted"] == 1  # only the utterance whose side file changed
    assert int(load_side(prep, "x", "train")[0][0, 0]) == 7

"""Checks that every utterance reads its own files: no file shared by two utterances, splits or sides."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import MinecliError


def _files_read(ext: Any, audio: str) -> list[str]:
    """The files other than the audio that an extractor reads for one utterance, resolved."""
    files = []
    feature_path = getattr(ext, "feature_path", None)
    if callable(feature_path):
        files.append(feature_path(audio))
    files.extend(ext.input_files(audio))
    return [os.path.realpath(f) for f in files]


def check_distinct_inputs(extractors: dict[str, Any], items: dict[str, list[Any]]) -> None:
    """Raise when two utterances (or x and y) would read the same file, which makes the estimate wrong.

    Extractors find their files by the audio file's stem, so ``a/utt1.wav`` and ``b/utt1.wav`` both
    read ``<dir>/utt1.npy``: one utterance gets another's features, and a test utterance can be
    trained on. The same audio file in two splits leaks test data into training just the same.
    """
    seen_audio: dict[str, str] = {}
    for split, split_items in items.items():
        for it in split_items:
            if it.audio is None:
                continue
            real = os.path.realpath(it.audio)
            if real in seen_audio and seen_audio[real] != split:
                raise MinecliError(f"{it.audio} is listed in both the {seen_audio[real]} and the {split} filelist; "
                                   "a file in two splits leaks held-out data into training. Remove it from one list")
            seen_audio.setdefault(real, split)
    for side, ext in extractors.items():
        owner: dict[str, str] = {}
        for split_items in items.values():
            for it in split_items:
                if it.audio is None:
                    continue
                for f in _files_read(ext, it.audio):
                    first = owner.setdefault(f, it.audio)
                    if os.path.realpath(first) != os.path.realpath(it.audio):
                        raise MinecliError(
                            f"{side}: {first} and {it.audio} both read {f} ({ext.name} finds files by the audio "
                            f"file's name, {Path(it.audio).stem!r}); give the audio files distinct names")
    # Only feature files count here: two label streams may well read different tiers of one TextGrid.
    paths = [getattr(ext, "feature_path", None) for ext in extractors.values()]
    if len(paths) == 2 and all(callable(f) for f in paths):
        for split_items in items.values():
            for it in split_items[:1]:
                if it.audio is None:
                    continue
                fa, fb = (os.path.realpath(f(it.audio)) for f in paths)  # type: ignore[misc]
                if fa == fb:
                    raise MinecliError(
                        f"x and y both read {fa} for {it.audio}: the estimate would be of a stream against "
                        "itself. Set params.dir of each precomputed side to the folder of its own features")

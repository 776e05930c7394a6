"""Frame-level phone labels, from forced-alignment TextGrids or from pocketsphinx run offline.

``source: textgrid`` reads the ``phones`` tier of a Praat TextGrid per utterance (Montreal Forced
Aligner style), found beside the audio or in ``textgrid_dir`` by the audio file's stem.
``source: pocketsphinx`` labels the audio itself with the English acoustic model that the
pocketsphinx wheel ships: phone decoding (no transcript), or forced alignment to a transcript
``<stem>.txt`` / ``<stem>.lab``. Either way the intervals are sampled at frame centres into an
int64 ``[T, 1]`` stream, ``T = round(duration * frame_rate)``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minecli import Extractor, MinecliError, MissingDependencyError, StreamSpec, hookimpl, param

SIL = "sil"
SPN = "spn"
#: the 39 phones of CMUdict / pocketsphinx en-us / MFA english_us_arpa (stress marks stripped)
ARPABET = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
           "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V",
           "W", "Y", "Z", "ZH")
TEXTGRID_SUFFIXES = (".TextGrid", ".textgrid", ".TEXTGRID")
TRANSCRIPT_SUFFIXES = (".txt", ".lab")
SPHINX_RATE = 16000

Source = Literal["textgrid", "pocketsphinx"]
PhoneSet = Literal["arpabet", "file", "data"]
SphinxMode = Literal["decode", "align"]
Interval = tuple[float, float, str]


@dataclass(frozen=True)
class PhonesParams:
    source: Source = param("textgrid", help="textgrid: read forced alignments; pocketsphinx: label the audio with "
                           "pocketsphinx's English model, offline")
    frame_rate: float = param(100.0, help="frames per second of the stream (e.g. 50 to match wav2vec2, 75 EnCodec)")
    phone_set: PhoneSet = param("arpabet", help="arpabet: the 39 CMU phones plus sil and spn (41 ids); file: the "
                                "map in phone_map; data: built from the train split's TextGrids (needs vocab_size)")
    phone_map: str | None = param(None, help="phone-to-id file for phone_set: file; one phone per line (id = line "
                                  "number) or 'phone id' pairs; must list 'sil'")
    vocab_size: int | None = param(None, help="number of ids; required for phone_set: data, optional upper bound "
                                   "for a phone_map")
    tier: str = param("phones", help="TextGrid tier to read")
    textgrid_dir: str | None = param(None, help="where <stem>.TextGrid files live (searched recursively); null: "
                                     "beside each audio file")
    silence_labels: list[str] = param(["", "sil", "sp", "<sil>", "<s>", "</s>", "silence", "pau", "h#"],
                                      help="labels (any case) that become silence, id 0; gaps and time past the "
                                      "last interval are silence too")
    noise_labels: list[str] = param(["spn", "nsn", "<unk>", "unk", "noise", "[noise]", "laughter", "[laughter]"],
                                    help="labels (any case) that become spoken noise 'spn'; '+NOISE+'-style "
                                    "fillers too")
    strip_stress: bool = param(True, help="drop ARPAbet stress digits (AH0 -> AH)")
    max_duration_diff: float = param(0.5, help="seconds the TextGrid may differ from the audio before it is "
                                     "rejected as belonging to another file")
    sample_rate: int = param(16000, help="audio rate (Hz); pocketsphinx's model needs 16000")
    pocketsphinx_mode: SphinxMode = param("decode", help="decode: phone recognition from audio alone; align: "
                                          "forced alignment to <stem>.txt or <stem>.lab")
    transcript_dir: str | None = param(None, help="where <stem>.txt / <stem>.lab transcripts live (null: beside "
                                       "the audio)")
    acoustic_model: str | None = param(None, help="pocketsphinx acoustic model directory (null: the en-us model "
                                       "inside the pocketsphinx package)")
    dictionary: str | None = param(None, help="pronunciation dictionary for align (null: the package's CMUdict)")

    def __post_init__(self) -> None:
        if not self.frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, not {self.frame_rate}")
        if self.phone_set == "file" and not self.phone_map:
            raise ValueError("phone_set: file needs phone_map, the path of a phone-to-id file")
        if self.phone_set != "file" and self.phone_map:
            raise ValueError(f"phone_map is only read with phone_set: file (phone_set is {self.phone_set!r})")
        if self.phone_set == "data" and self.vocab_size is None:
            raise ValueError("phone_set: data needs vocab_size, an upper bound on the number of distinct phones "
                             "(the stream's size must be known before the data are read), e.g. 80")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, not {self.vocab_size}")
        if self.phone_set == "arpabet" and self.vocab_size not in (None, len(ARPABET) + 2):
            raise ValueError(f"phone_set: arpabet has {len(ARPABET) + 2} ids; leave vocab_size unset")
        if self.source == "pocketsphinx":
            if self.sample_rate != SPHINX_RATE:
                raise ValueError(f"source: pocketsphinx needs sample_rate {SPHINX_RATE}, not {self.sample_rate}")
            if self.phone_set == "data":
                raise ValueError("source: pocketsphinx emits ARPAbet phones; use phone_set: arpabet (or a file)")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {self.sample_rate}")
        if self.max_duration_diff < 0:
            raise ValueError(f"max_duration_diff must be >= 0, not {self.max_duration_diff}")


# ----------------------------------------------------------------------------- TextGrid
_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(\[[^\]]*\])|(<exists>|<absent>)|([A-Za-z_][\w?]*)'
                    r'|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(![^\n]*)')


def _read_text(path: str | os.PathLike[str]) -> str:
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # Praat writes UTF-16 when labels need it
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def parse_textgrid(path: str | os.PathLike[str]) -> dict[str, list[Interval]]:
    """Interval tiers of a Praat TextGrid (long or short text format) as {name: [(start, end, label)]}."""
    tokens: list[Any] = []
    for m in _TOKEN.finditer(_read_text(path)):
        string, _bracket, flag, _word, number, _comment = m.groups()
        if string is not None:
            tokens.append(string.replace('""', '"'))
        elif flag is not None:
            tokens.append(flag)
        elif number is not None:
            tokens.append(float(number))
    try:
        if tokens[:2] != ["ooTextFile", "TextGrid"]:
            raise MinecliError(f"{path} is not a Praat TextGrid text file (it should begin with "
                               "'File type = \"ooTextFile\"' and 'Object class = \"TextGrid\"')")
        pos = 4  # after file type, class, xmin, xmax
        if tokens[pos] != "<exists>":
            return {}
        n_tiers = int(tokens[pos + 1])
        pos += 2
        tiers: dict[str, list[Interval]] = {}
        for _ in range(n_tiers):
            kind, name, _xmin, _xmax, count = tokens[pos:pos + 5]
            pos += 5
            count = int(count)
            if kind == "IntervalTier":
                tiers[str(name)] = [(float(tokens[pos + 3 * i]), float(tokens[pos + 3 * i + 1]),
                                     str(tokens[pos + 3 * i + 2])) for i in range(count)]
                pos += 3 * count
            else:  # TextTier: points (time, mark); not usable as frame labels
                pos += 2 * count
        return tiers
    except (IndexError, ValueError, TypeError):
        raise MinecliError(f"cannot parse TextGrid {path}: it is truncated or malformed") from None


def textgrid_duration(path: str | os.PathLike[str]) -> float:
    """The xmax of a TextGrid, in seconds."""
    tiers = parse_textgrid(path)
    return max((iv[1] for ivs in tiers.values() for iv in ivs), default=0.0)


def write_textgrid(path: str | os.PathLike[str], tiers: dict[str, list[Interval]], xmax: float | None = None) -> None:
    """Write interval tiers as a long-format TextGrid (what MFA and Praat write)."""
    end = xmax if xmax is not None else max((iv[1] for ivs in tiers.values() for iv in ivs), default=0.0)
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {end!r}",
             "tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for i, (name, intervals) in enumerate(tiers.items(), 1):
        lines += [f"    item [{i}]:", '        class = "IntervalTier"', f'        name = "{name}"',
                  "        xmin = 0", f"        xmax = {end!r}", f"        intervals: size = {len(intervals)}"]
        for j, (a, b, text) in enumerate(intervals, 1):
            label = text.replace('"', '""')
            lines += [f"        intervals [{j}]:", f"            xmin = {a!r}", f"            xmax = {b!r}",
                      f'            text = "{label}"']
    from minecli.core.io import write_text

    # Atomic: every process of a sharded extraction writes the same map, and another may be reading it.
    write_text(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- labels and frames
def read_phone_map(path: str | os.PathLike[str]) -> dict[str, int]:
    """A phone-to-id file: one phone per line (id = line number) or 'phone id'; '#' starts a comment."""
    mapping: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MinecliError(f"cannot read phone map {path}: {exc.strerror or exc}") from None
    entries = [line.split("#", 1)[0].split() for line in text.splitlines()]
    entries = [e for e in entries if e]
    for n, fields in enumerate(entries):
        if len(fields) == 1:
            mapping[fields[0]] = n
        elif len(fields) == 2 and fields[1].lstrip("-").isdigit() and int(fields[1]) >= 0:
            mapping[fields[0]] = int(fields[1])
        else:
            raise MinecliError(f"phone map {path}: cannot read line {' '.join(fields)!r}; write 'phone' or "
                               "'phone id' per line")
    if not mapping:
        raise MinecliError(f"phone map {path} is empty")
    return mapping


def write_phone_map(path: str | os.PathLike[str], mapping: dict[str, int]) -> None:
    """Write a map in the 'phone id' form read_phone_map reads."""
    lines = [f"{phone} {idx}" for phone, idx in sorted(mapping.items(), key=lambda kv: (kv[1], kv[0]))]
    from minecli.core.io import write_text

    # Atomic: every process of a sharded extraction writes the same map, and another may be reading it.
    write_text(path, "\n".join(lines) + "\n")


def arpabet_map() -> dict[str, int]:
    """sil = 0, spn = 1, then the 39 ARPAbet phones."""
    return {SIL: 0, SPN: 1, **{p: i + 2 for i, p in enumerate(ARPABET)}}


def frames_from_intervals(intervals: list[tuple[float, float, int]], duration: float, frame_rate: float,
                          fill: int) -> Any:
    """Sample (start, end, id) intervals at frame centres: int64 ``[round(duration * frame_rate)]``."""
    import numpy as np

    n = max(0, int(round(duration * frame_rate)))
    out = np.full(n, fill, dtype=np.int64)
    if not intervals or n == 0:
        return out
    ivs = sorted(intervals)
    starts = np.array([a for a, _, _ in ivs])
    ends = np.array([b for _, b, _ in ivs])
    ids = np.array([i for _, _, i in ivs], dtype=np.int64)
    centres = (np.arange(n) + 0.5) / frame_rate
    k = np.searchsorted(starts, centres, side="right") - 1
    inside = (k >= 0) & (centres < ends[np.clip(k, 0, None)])
    out[inside] = ids[k[inside]]
    return out


class Phones(Extractor):
    """Phone index per frame from TextGrids or from pocketsphinx; silence is id 0."""

    name = "phones"
    summary = "phone labels per frame from MFA-style TextGrids or offline pocketsphinx (41 ARPAbet ids)"
    Params = PhonesParams
    needs_path = True
    batch_size = 1

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._map: dict[str, int] | None = None
        self._tg_index: dict[str, str] | None = None
        self._tg_dupes: dict[str, list[str]] = {}
        self._decoder: Any = None
        self._frate = 100

    # ------------------------------------------------------------------ vocabulary
    def spec(self) -> StreamSpec:
        """int64 ``[T, 1]`` at frame_rate; vocab from the phone set, the map file or vocab_size."""
        p = self.params
        if p.phone_set == "arpabet":
            vocab = len(ARPABET) + 2
        elif p.phone_set == "data":
            vocab = int(p.vocab_size)
        else:
            mapping = self._file_map()
            vocab = max(max(mapping.values()) + 1, p.vocab_size or 0)
        return StreamSpec("index", float(p.frame_rate), vocab_size=vocab, n_codebooks=1, sample_rate=p.sample_rate)

    def _file_map(self) -> dict[str, int]:
        if self._map is None:
            p = self.params
            raw = read_phone_map(str(p.phone_map))
            mapping: dict[str, int] = {}
            for label, idx in raw.items():
                mapping.setdefault(self._canonical(label), idx)
            if SIL not in mapping:
                raise MinecliError(f"phone map {p.phone_map} has no silence entry: add a line 'sil' (gaps and "
                                   "silence labels map to it)")
            if p.vocab_size is not None and max(mapping.values()) >= p.vocab_size:
                raise MinecliError(f"phone map {p.phone_map} uses ids up to {max(mapping.values())}, but "
                                   f"vocab_size is {p.vocab_size}")
            self._map = mapping
        return self._map

    def _canonical(self, label: str) -> str:
        """Fold silence and noise spellings, stress marks and case into one label."""
        p = self.params
        text = label.strip()
        low = text.lower()
        if low in {s.lower() for s in p.silence_labels}:
            return SIL
        if low in {s.lower() for s in p.noise_labels} or (len(text) > 2 and text[0] == text[-1] == "+"):
            return SPN
        if p.strip_stress and len(text) > 1 and text[-1] in "012" and text[:-1].isalpha():
            text = text[:-1]
        return text.upper() if p.phone_set == "arpabet" else text

    def _id(self, label: str, where: str) -> int:
        mapping = self._map
        assert mapping is not None
        phone = self._canonical(label)
        if phone in mapping:
            return mapping[phone]
        if self.params.phone_set == "data" or (self.params.phone_set == "file" and SPN in mapping):
            return mapping[SPN] if SPN in mapping else 1
        hint = ("use phone_set: data or a phone_map for other phone sets (e.g. MFA's IPA english_mfa)"
                if self.params.phone_set == "arpabet" else f"add it to {self.params.phone_map} (or an 'spn' line "
                "for unknown labels)")
        raise MinecliError(f"phone label {label!r} in {where} is not in the {self.params.phone_set} phone set; {hint}")

    def fingerprint(self) -> str:
        """The params' hash, plus the phone map's contents when a file or the train data define it."""
        base = super().fingerprint()
        mapping = self._map
        if self.params.phone_set == "file":
            mapping = self._file_map()
        if self.params.phone_set == "arpabet" or not mapping:
            return base
        import hashlib

        blob = base + repr(sorted(mapping.items()))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fit(self, train_paths: list[str], cache_dir: str) -> None:
        """For phone_set: data, build the phone map from the train split's TextGrids (and save it)."""
        if self.params.phone_set != "data":
            return
        self._map = self._map_from_textgrids([self._find_textgrid(path) for path in train_paths])
        os.makedirs(cache_dir, exist_ok=True)
        write_phone_map(os.path.join(cache_dir, f"phones-{self.fingerprint()}.map"), self._map)

    def _map_from_textgrids(self, paths: list[str]) -> dict[str, int]:
        labels: set[str] = set()
        for tg in paths:
            labels.update(self._canonical(label) for _, _, label in self._tier(tg))
        others = sorted(labels - {SIL, SPN})
        mapping = {SIL: 0, SPN: 1, **{phone: i + 2 for i, phone in enumerate(others)}}
        if len(mapping) > int(self.params.vocab_size):
            raise MinecliError(f"the TextGrids hold {len(mapping)} distinct labels (with sil and spn) but "
                               f"vocab_size is {self.params.vocab_size}; raise vocab_size to at least {len(mapping)}")
        return mapping

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Set up the phone map and, for pocketsphinx, the decoder with the package's model."""
        p = self.params
        if p.phone_set == "arpabet":
            self._map = arpabet_map()
        elif p.phone_set == "file":
            self._file_map()
        elif self._map is None:
            if not p.textgrid_dir:
                raise MinecliError("phone_set: data builds its map from the train split (the pipeline calls fit) "
                                   "or from every TextGrid under textgrid_dir; set textgrid_dir or use "
                                   "phone_set: arpabet / file")
            self._map = self._map_from_textgrids(sorted(self._index().values()))
        if p.source == "pocketsphinx":
            self._load_pocketsphinx()

    def _load_pocketsphinx(self) -> None:
        try:
            import pocketsphinx
        except ImportError:
            raise MissingDependencyError("pocketsphinx", "phones", "phones with source: pocketsphinx") from None
        p = self.params
        hmm = p.acoustic_model or pocketsphinx.get_model_path("en-us/en-us")
        if not os.path.isfile(os.path.join(hmm, "mdef")):
            raise MinecliError(f"pocketsphinx acoustic model directory {hmm} has no 'mdef' file; point "
                               "acoustic_model at a model directory (the package ships en-us/en-us)")
        kwargs: dict[str, Any] = {"hmm": hmm, "samprate": SPHINX_RATE, "loglevel": "FATAL", "cmn": "batch"}
        if p.pocketsphinx_mode == "decode":
            # Phone recognition with the package's phone bigram; these are pocketsphinx's documented
            # allphone settings (wide beams, stronger language weight).
            kwargs.update(allphone=pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"), lw=2.0,
                          beam=1e-20, pbeam=1e-20)
        else:
            kwargs["dict"] = p.dictionary or pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
            if not os.path.isfile(kwargs["dict"]):
                raise MinecliError(f"pronunciation dictionary {kwargs['dict']} not found")
        self._decoder = pocketsphinx.Decoder(**kwargs)
        self._frate = int(self._decoder.config["frate"])

    # ------------------------------------------------------------------ finding files
    def _index(self) -> dict[str, str]:
        if self._tg_index is None:
            index: dict[str, str] = {}
            root = Path(str(self.params.textgrid_dir))
            if not root.is_dir():
                raise MinecliError(f"textgrid_dir {root} is not a directory")
            dupes: dict[str, list[str]] = {}
            for path in sorted(root.rglob("*")):
                if path.suffix in TEXTGRID_SUFFIXES:
                    if path.stem in index:
                        dupes.setdefault(path.stem, [index[path.stem]]).append(str(path))
                    index.setdefault(path.stem, str(path))
            # A stem found twice is ambiguous: picking one would label an utterance with another's phones.
            self._tg_dupes = dupes
            self._tg_index = index
        return self._tg_index

    def input_files(self, path: str) -> list[str]:
        """The TextGrid (or, for forced alignment, the transcript) that the labels of `path` come from."""
        p = self.params
        if p.source == "textgrid":
            return [self._find_textgrid(path)]
        if p.pocketsphinx_mode == "align":
            return [self._find_transcript(path)]
        return []

    def _find_textgrid(self, audio_path: str) -> str:
        p = self.params
        stem = Path(audio_path).stem
        base = Path(p.textgrid_dir) if p.textgrid_dir else Path(audio_path).parent
        for suffix in TEXTGRID_SUFFIXES:
            if (base / (stem + suffix)).is_file():
                return str(base / (stem + suffix))
        if p.textgrid_dir and stem in self._index():
            if stem in self._tg_dupes:
                raise MinecliError(f"textgrid_dir holds more than one {stem} TextGrid ({' and '.join(self._tg_dupes[stem])}) "
                                   f"for {audio_path}; give the files distinct names or point textgrid_dir at one folder")
            return self._index()[stem]
        raise MinecliError(f"no TextGrid for {audio_path}: expected {base / (stem + '.TextGrid')}"
                           + ("" if p.textgrid_dir else "; set textgrid_dir if the alignments live elsewhere"))

    def _find_transcript(self, audio_path: str) -> str:
        p = self.params
        stem = Path(audio_path).stem
        base = Path(p.transcript_dir) if p.transcript_dir else Path(audio_path).parent
        for suffix in TRANSCRIPT_SUFFIXES:
            if (base / (stem + suffix)).is_file():
                return str(base / (stem + suffix))
        raise MinecliError(f"pocketsphinx_mode: align needs a transcript for {audio_path}: expected "
                           f"{base / (stem + '.txt')} (or .lab); or use pocketsphinx_mode: decode")

    def _tier(self, tg_path: str) -> list[Interval]:
        tiers = parse_textgrid(tg_path)
        if self.params.tier not in tiers:
            names = ", ".join(repr(t) for t in tiers) or "none"
            raise MinecliError(f"TextGrid {tg_path} has no interval tier {self.params.tier!r} (tiers: {names}); "
                               "set tier")
        return tiers[self.params.tier]

    # ------------------------------------------------------------------ labelling
    def _sphinx_intervals(self, wave: Any, audio_path: str | None) -> list[Interval]:
        import numpy as np

        pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        dec = self._decoder
        rate = float(self._frate)
        # CMN and feature state carry over between utterances; reset them so each file's labels
        # depend on that file alone (and extraction order cannot change the cache).
        dec.reinit_feat()
        if self.params.pocketsphinx_mode == "decode":
            dec.start_utt()
            dec.process_raw(pcm, full_utt=True)
            dec.end_utt()
            # No hypothesis at all (pure silence) is None, not an empty list: every frame is silence.
            return [(s.start_frame / rate, (s.end_frame + 1) / rate, s.word) for s in dec.seg() or []]
        if audio_path is None:
            raise ValueError("phones with pocketsphinx_mode: align needs the audio path to find its transcript")
        transcript = self._find_transcript(audio_path)
        raw = Path(transcript).read_text(encoding="utf-8").lower()
        # Dictionaries hold bare words: drop punctuation but keep in-word apostrophes (it's, man's).
        text = " ".join(re.sub(r"[^\w' ]+|(?<!\w)'|'(?!\w)", " ", raw).split())
        try:
            dec.set_align_text(text)
        except Exception as exc:  # pocketsphinx raises RuntimeError for words missing from the dictionary
            raise MinecliError(f"pocketsphinx cannot align {transcript}: {exc}; words outside the dictionary "
                               "need entries in a dictionary file (set dictionary)") from None
        # Word alignment first, then phone alignment within it: pocketsphinx's two-pass recipe.
        for second in (False, True):
            if second:
                dec.set_alignment()
                dec.reinit_feat()
            dec.start_utt()
            dec.process_raw(pcm, full_utt=True)
            dec.end_utt()
        alignment = dec.get_alignment()
        if alignment is None:
            raise MinecliError(f"pocketsphinx could not align {audio_path} to {transcript}")
        return [(ph.start / rate, (ph.start + ph.duration) / rate, ph.name) for word in alignment for ph in word]

    def __call__(self, wave: Any, sample_rate: int, path: str | None = None) -> Any:
        """Label one utterance: int64 ``[round(duration * frame_rate), 1]``."""
        import numpy as np
        import torch

        p = self.params
        self._check_rate(sample_rate)
        self.ensure_loaded()
        x = wave.detach().cpu().to(torch.float32).numpy() if hasattr(wave, "detach") else np.asarray(wave, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=0)
        duration = x.shape[-1] / sample_rate
        if duration * p.frame_rate < 0.5:
            raise MinecliError(f"{path or 'the audio'} lasts {duration * 1000:.1f} ms, shorter than one "
                               f"{1000 / p.frame_rate:g} ms phone frame; remove it from the filelist")
        if p.source == "textgrid":
            if path is None:
                raise ValueError("phones with source: textgrid needs the audio path to find <stem>.TextGrid")
            where = self._find_textgrid(path)
            intervals = self._tier(where)
            end = max((b for _, b, _ in intervals), default=0.0)
            if abs(end - duration) > p.max_duration_diff:
                raise MinecliError(f"TextGrid {where} lasts {end:.2f} s but {path} lasts {duration:.2f} s; is it "
                                   "the alignment of another file? (max_duration_diff sets the tolerance)")
        else:
            where = "pocketsphinx output"
            intervals = self._sphinx_intervals(x, path)
        sil = self._map[SIL]  # type: ignore[index]
        labelled = [(a, b, self._id(label, where)) for a, b, label in intervals]
        frames = frames_from_intervals(labelled, duration, p.frame_rate, fill=sil)
        return torch.from_numpy(frames).view(-1, 1)


@hookimpl
def register_extractors(register):
    register(Phones)

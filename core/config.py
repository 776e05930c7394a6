"""The run configuration: one YAML file is one experiment; ``key=value`` overrides on the command line."""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, MinecliError, PluginError, did_you_mean
from .params import fields_of, param, params_to_dict, parse_params
from .settings import CriticConfig, EstimatorConfig, HeadConfig, TrainConfig


def default_cache_dir() -> str:
    """MINECLI_CACHE, else $XDG_CACHE_HOME/minecli, else ~/.cache/minecli: shared by every run."""
    if os.environ.get("MINECLI_CACHE"):
        return os.environ["MINECLI_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minecli")


@dataclass(frozen=True)
class DataConfig:
    """Where the audio (or precomputed features) of each split is."""

    train: str | None = param(None, help="filelist of train audio paths, one per line (relative paths: to the list's folder)")
    valid: str | None = param(None, help="filelist of validation audio")
    test: str | None = param(None, help="filelist of test audio (the final estimate)")
    root: str | None = param(None, help="folder that relative paths in the filelists are relative to (default: the list's folder)")
    cache_dir: str | None = param(None, help="feature cache shared by runs (default: $MINECLI_CACHE or ~/.cache/minecli)")
    train_csv: str | None = param(None, help="original-pipeline CSV (id,x_feature,y_feature) for train, instead of filelists")
    valid_csv: str | None = param(None, help="original-pipeline CSV for validation")
    test_csv: str | None = param(None, help="original-pipeline CSV for test")
    features_dir: str | None = param(None, help="folder that relative feature paths in the CSVs are relative to")
    max_files: int | None = param(None, help="use only the first N files of each split (quick trials)")
    on_error: Literal["stop", "skip"] = param(
        "stop", help="an unreadable audio file stops the run (stop), or is left out and listed in skipped.txt (skip)")

    def __post_init__(self) -> None:
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"data.max_files must be a positive number of files (or null for all), not {self.max_files}")


_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ExtractionConfig:
    """Where and in what batches the extractors run; none of it changes the features or the cache."""

    device: str = param("auto", help="'auto' (CUDA when present, else the CPU), 'cpu', 'cuda' or 'cuda:N'; under "
                                     "torchrun auto and cuda mean cuda:LOCAL_RANK")
    batch_size: int | None = param(None, help="utterances per forward pass (null: the extractor's own choice on the "
                                              "CPU, at least 16 on a GPU); utterances of similar length are batched")
    max_batch_seconds: float = param(320.0, help="most seconds of padded audio in one batch (batch size x the "
                                                 "longest utterance); a longer utterance goes alone")

    def __post_init__(self) -> None:
        if not _DEVICE_NAME.match(str(self.device).strip().lower()):
            raise ValueError(f"extraction.device {self.device!r} is not a device; use auto, cpu, cuda or cuda:N")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"extraction.batch_size must be at least 1 (or null), not {self.batch_size}")
        if not self.max_batch_seconds > 0:
            raise ValueError(f"extraction.max_batch_seconds must be positive, not {self.max_batch_seconds}")


@dataclass(frozen=True)
class StreamConfig:
    """One side of the pair: an extractor, its params, its encoder head."""

    extractor: str = param(help="extractor plugin name (see 'minecli plugins list --kind extractor')")
    params: dict = param({}, help="the extractor's parameters (see 'minecli plugins show NAME')")
    head: HeadConfig = param(HeadConfig(), help="encoder head: name and params")
    context_frames: int | None = param(None, help="context window for this side (default: pairing.context_frames)")


@dataclass(frozen=True)
class PairingConfig:
    """How the two streams are aligned, cropped and normalised."""

    segment_length: int = param(1, help="consecutive frames per training segment; pairs per step = batch_size * segment_length")
    context_frames: int = param(1, help="frames of context around each frame, for both sides (the original context_frame_numbers)")
    normalization: Literal["auto", "none", "minmax", "standard", "robust", "normal_score"] = param(
        "auto", help="float-stream normalisation from train statistics: auto gives normal scores (rank, then "
        "Phi^-1) to heavy-tailed dimensions (kurtosis > 6) and standard scores to the rest")
    x_repeat: int | Literal["auto"] = param("auto", help="repeat each x frame N times; 'auto' aligns by frame rate")
    y_repeat: int | Literal["auto"] = param("auto", help="repeat each y frame N times; 'auto' aligns by frame rate")
    max_length_diff: int = param(5, help="drop an utterance whose aligned lengths differ by more frames than this")
    lag_frames: int = param(0, help="pair x at frame t with y at frame t + lag (aligned frames, may be negative; "
                                    "the ends are trimmed): sweep it to see where information peaks")
    lag_ms: float | None = param(None, help="the lag in milliseconds instead, rounded to aligned frames")

    def __post_init__(self) -> None:
        if self.lag_ms is not None and self.lag_frames != 0:
            raise ValueError("set pairing.lag_frames or pairing.lag_ms, not both")
        if self.segment_length < 1 or self.context_frames < 1:
            raise ValueError("segment_length and context_frames must be at least 1")
        for r in (self.x_repeat, self.y_repeat):
            if r != "auto" and (not isinstance(r, int) or r < 1):
                raise ValueError(f"x_repeat and y_repeat must be 'auto' or a positive integer, not {r!r}")
        if (self.x_repeat == "auto") != (self.y_repeat == "auto"):
            raise ValueError("set both x_repeat and y_repeat to integers, or both to 'auto'")


@dataclass(frozen=True)
class OutputConfig:
    """Where results and checkpoints go."""

    dir: str | None = param(None, help="output folder (default: runs/<config name>)")
    save_every: int | None = param(500, help="write a resumable checkpoint every N steps")
    resume: bool = param(True, help="continue from the checkpoint in dir when there is one")


@dataclass(frozen=True)
class RunConfig:
    """A whole experiment."""

    x: StreamConfig = param(help="the first stream")
    y: StreamConfig = param(help="the second stream")
    data: DataConfig = param(DataConfig(), help="splits")
    extraction: ExtractionConfig = param(ExtractionConfig(), help="device and batches of the extractors")
    pairing: PairingConfig = param(PairingConfig(), help="alignment and normalisation")
    estimator: EstimatorConfig = param(EstimatorConfig(), help="the bound")
    critic: CriticConfig = param(CriticConfig(), help="the critic network")
    training: TrainConfig = param(TrainConfig(), help="optimisation")
    output: OutputConfig = param(OutputConfig(), help="results and checkpoints")

    def contexts(self) -> tuple[int, int]:
        """Context frames of x and y: each side's own, else pairing.context_frames."""
        return (self.x.context_frames or self.pairing.context_frames,
                self.y.context_frames or self.pairing.context_frames)


SECTIONS = ("data", "extraction", "x", "y", "pairing", "estimator", "critic", "training", "output")


def _parse_value(text: str) -> Any:
    """A command-line override value, read as YAML so 'null', '[64, 64]' and 'true' work."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested mapping (a new copy)."""
    doc = copy.deepcopy(doc)
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r} is not KEY=VALUE (e.g. training.steps=500)")
            continue
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            problems.append(f"override {item!r} has an empty key")
            continue
        node = doc
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = _parse_value(value)
    if problems:
        raise ConfigError(problems)
    return doc


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with errors naming the file and line."""
    p = Path(path)
    if not p.exists():
        raise MinecliError(f"config file not found: {path}")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MinecliError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise MinecliError(f"{path}: a config must be a mapping of sections ({', '.join(SECTIONS)})")
    return doc


def _seed_compat(doc: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Map the original pipeline's key names onto minecli's, so its users' configs still read."""
    doc = copy.deepcopy(doc)
    data = doc.get("data") if isinstance(doc.get("data"), dict) else None
    if data is not None:
        moved = {k: data.pop(k) for k in ("segment_length", "normalization", "x_repeat", "y_repeat",
                                          "max_length_diff", "context_frame_numbers") if k in data}
        if moved:
            pairing = doc.setdefault("pairing", {})
            for k, v in moved.items():
                pairing.setdefault("context_frames" if k == "context_frame_numbers" else k, v)
            notes.append(f"moved data.{', data.'.join(moved)} to pairing")
    if isinstance(doc.get("validation"), dict):
        val = doc.pop("validation")
        tr = doc.setdefault("training", {})
        if "validate_every_n_steps" in val:
            tr.setdefault("validate_every", val["validate_every_n_steps"])
        if "early_stopping_patience" in val:
            tr.setdefault("early_stopping_patience", val["early_stopping_patience"])
        notes.append("read the validation section into training")
    if isinstance(doc.get("checkpoint"), dict):
        ck = doc.pop("checkpoint")
        out = doc.setdefault("output", {})
        if "dir" in ck:
            out.setdefault("dir", str(Path(ck["dir"]).parent) if ck["dir"] else None)
        notes.append("read the checkpoint section into output")
    if isinstance(doc.get("training"), dict):
        tr = doc["training"]
        for k in ("num_workers",):
            if k in tr:
                tr.pop(k)
                notes.append(f"ignored training.{k}: minecli samples from memory and needs no loader workers")
    doc.pop("logging", None)
    return doc


_SEED_MODEL_KEYS = {"x_type", "y_type", "x_dim", "y_dim", "x_vocab_size", "y_vocab_size", "x_embedding_dim",
                    "y_embedding_dim", "x_proj_dim", "y_proj_dim", "hidden_dims", "activation", "batch_norm",
                    "dropout", "bias_correction_method"}


def _map_seed_model(doc: dict[str, Any], notes: list[str]) -> list[str]:
    """Turn the original pipeline's ``model`` section into x/y streams (precomputed), heads and critic.

    Only meaningful with precomputed features (its CSVs); ``x``/``y`` sections given explicitly win.
    """
    model = doc.pop("model")
    if not isinstance(model, dict):
        return ["model must be a mapping"]
    problems = [f"unknown key 'model.{k}'.{did_you_mean(str(k), sorted(_SEED_MODEL_KEYS))}"
                for k in model if k not in _SEED_MODEL_KEYS]
    pairing = doc.get("pairing") or {}
    for side in ("x", "y"):
        if side in doc:
            continue
        kind = model.get(f"{side}_type", "float")
        repeat = pairing.get(f"{side}_repeat", 1)
        # The original had no frame rates; with explicit repeats only their ratio matters.
        rate = 100.0 / repeat if isinstance(repeat, int) and repeat > 0 else 100.0
        if kind == "index":
            params = {"kind": "index", "vocab_size": model.get(f"{side}_vocab_size"), "frame_rate": rate}
            head = {"name": "embedding", "params": {"dim": model.get(f"{side}_embedding_dim", 64)}}
        else:
            params = {"kind": "float", "dim": model.get(f"{side}_dim"), "frame_rate": rate}
            proj = model.get(f"{side}_proj_dim")
            head = {"name": "projection", "params": {"dim": proj}} if proj else {"name": "identity"}
        doc[side] = {"extractor": "precomputed", "params": params, "head": head}
    critic = doc.setdefault("critic", {})
    for key in ("hidden_dims", "activation", "batch_norm", "dropout"):
        if key in model:
            critic.setdefault(key, model[key])
    method = model.get("bias_correction_method")
    if method is not None and "estimator" not in doc:
        doc["estimator"] = {"name": "dv" if str(method) == "none" else "mine"}
    notes.append("mapped the original model section onto x/y (precomputed features), heads and critic")
    return problems


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> tuple[RunConfig, dict[str, Any], list[str]]:
    """Read, override and check a config; every problem is reported in one ConfigError.

    Returns the parsed config, the resolved document (every default filled in) and notes.
    """
    raw = read_yaml(path)
    doc = apply_overrides(raw, list(overrides or []))
    notes: list[str] = []
    doc = _seed_compat(doc, notes)
    if "model" in doc:
        problems_model = _map_seed_model(doc, notes)
        if problems_model:
            raise ConfigError(problems_model, str(path))
    problems: list[str] = []
    for key in doc:
        if key not in SECTIONS:
            problems.append(f"unknown section '{key}'.{did_you_mean(str(key), SECTIONS)} Sections: {', '.join(SECTIONS)}")
    doc = {k: v for k, v in doc.items() if k in SECTIONS}
    cfg = parse_params(RunConfig, doc, "", problems)
    if cfg is None:
        raise ConfigError(problems, str(path))
    # Plugin names, their params and the data paths are checked even when other keys are wrong, so
    # one error lists every problem of the file; a section that did not parse (and so holds its
    # defaults) is not checked again, which would report errors the file does not contain.
    _check_semantics(cfg, problems, _broken_sections(doc) if problems else set())
    if problems:
        raise ConfigError(problems, str(path))
    return cfg, resolved_document(cfg), notes


def _broken_sections(doc: dict[str, Any]) -> set[str]:
    """Sections of `doc` that have problems of their own."""
    broken = set()
    for f, tp in fields_of(RunConfig):
        if f.name in doc:
            local: list[str] = []
            parse_params(tp, doc[f.name], f.name, local)
            if local:
                broken.add(f.name)
    return broken


def _check_semantics(cfg: RunConfig, problems: list[str], skip: set[str] | None = None) -> None:
    """Cross-field checks that need the registry: plugin names, their params, heads, data.

    Sections named in `skip` are left out (they failed to parse and hold defaults).
    """
    skip = skip or set()
    from .registry import get_registry

    reg = get_registry()
    for side in ("x", "y"):
        sc: StreamConfig = getattr(cfg, side)
        if side in skip or not isinstance(sc, StreamConfig):
            continue
        try:
            cls = reg.get("extractor", sc.extractor).obj
        except PluginError as exc:
            problems.append(f"{side}.extractor: {exc}")
            continue
        try:
            params = cls.parse(sc.params, f"{side}.params")
            spec = cls(params).spec()
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except (ValueError, MinecliError) as exc:
            problems.append(f"{side}.params: {exc}")
            continue
        head = sc.head.name or ("embedding" if spec.kind == "index" else "projection")
        try:
            hcls = reg.get("head", head).obj
            if spec.kind not in hcls.accepts:
                other = "embedding" if spec.kind == "index" else "projection"
                problems.append(f"{side}.head.name: '{head}' does not accept {spec.kind} streams; use '{other}'")
            else:
                hcls.parse(sc.head.params, f"{side}.head.params")
        except PluginError as exc:
            problems.append(f"{side}.head.name: {exc}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if "estimator" not in skip and isinstance(cfg.estimator, EstimatorConfig):
        try:
            ecls = reg.get("estimator", cfg.estimator.name).obj
            ecls.parse(cfg.estimator.params, "estimator.params")
        except PluginError as exc:
            problems.append(f"estimator.name: {exc}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    pr, tr = cfg.pairing, cfg.training
    if (isinstance(pr, PairingConfig) and isinstance(tr, TrainConfig) and tr.segment_length != 1
            and tr.segment_length != pr.segment_length):
        # The run crops segments of pairing.segment_length; a different training value would be ignored.
        problems.append(f"training.segment_length ({tr.segment_length}) differs from pairing.segment_length "
                        f"({pr.segment_length}); set pairing.segment_length={tr.segment_length} instead")
    d = cfg.data
    if "data" in skip or not isinstance(d, DataConfig):
        return
    lists = [d.train, d.valid, d.test]
    csvs = [d.train_csv, d.valid_csv, d.test_csv]
    if any(csvs) and any(lists):
        problems.append("data: give filelists (train, valid, test) or CSVs (train_csv, valid_csv, test_csv), not both")
    elif any(csvs):
        for name, v in zip(("train_csv", "valid_csv", "test_csv"), csvs):
            if not v:
                problems.append(f"data.{name} is missing")
            elif not Path(v).exists():
                problems.append(f"data.{name}: file not found: {v}")
    else:
        for name, v in zip(("train", "valid", "test"), lists):
            if not v:
                problems.append(f"data.{name} is missing: a filelist of audio paths, one per line")
            elif not Path(v).exists():
                problems.append(f"data.{name}: filelist not found: {v}")


def resolved_document(cfg: RunConfig) -> dict[str, Any]:
    """The config with every default filled in, as saved beside the results."""
    doc = params_to_dict(cfg)
    return {k: doc[k] for k in SECTIONS}

"""``minecli run``: filelists -> cached extraction -> pairing -> training -> held-out estimate -> results."""
from __future__ import annotations

import contextlib
import csv
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .._version import __version__
from .audio import conversion_note
from .config import RunConfig, StreamConfig, default_cache_dir, load_config
from .errors import MinecliError
from .inputs import check_distinct_inputs
from .interfaces import Extractor
from .io import write_text
from .outdir import claim_output_dir
from .registry import get_extractor_class
from .spec import StreamSpec
from .verdict import flag_non_finite, note_inputs, require_finite, trainer_suspicions

if TYPE_CHECKING:
    from .distributed import Shard

SPLITS = ("train", "valid", "test")


@dataclass
class Item:
    """One utterance of a split: an id, its audio path, and (CSV input) its feature files."""

    id: str
    audio: str | None
    x_file: str | None = None
    y_file: str | None = None


@dataclass
class RunResult:
    """What ``minecli run`` produced."""

    document: dict[str, Any]
    summary: str
    output_dir: Path
    #: False on torchrun ranks other than 0, which extract, train and share the scoring; rank 0 writes the results
    primary: bool = True


@dataclass
class Prepared:
    """A config turned into extractors and split item lists, ready to extract."""

    cfg: RunConfig
    doc: dict[str, Any]
    notes: list[str]
    extractors: dict[str, Extractor]
    specs: dict[str, StreamSpec]
    items: dict[str, list[Item]]
    cache_dir: Path
    source: str = "filelists"
    stats: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs
def read_filelist(path: str, root: str | None = None, limit: int | None = None) -> list[Item]:
    """Audio paths, one per line ('#' comments and blank lines skipped); relative paths resolved."""
    base = Path(root) if root else Path(path).resolve().parent
    items: list[Item] = []
    missing: list[str] = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        p = Path(text)
        if not p.is_absolute():
            p = base / p
        if not p.exists():
            missing.append(f"{path}:{lineno}: {text}")
        items.append(Item(id=p.stem, audio=str(p)))
        if limit and len(items) >= limit:
            break
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise MinecliError(f"audio files listed but not found: {'; '.join(missing[:3])}{more}. Fix the filelist "
                           "or set data.root to the folder its relative paths start from")
    if not items:
        raise MinecliError(f"filelist {path} lists no audio files")
    return items


def read_seed_csv(path: str, features_dir: str | None, limit: int | None = None) -> list[Item]:
    """The original pipeline's CSV: ``id,x_feature,y_feature`` (or source_feature/target_feature)."""
    base = Path(features_dir) if features_dir else Path(path).resolve().parent
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        xcol = "x_feature" if "x_feature" in cols else "source_feature" if "source_feature" in cols else None
        ycol = "y_feature" if "y_feature" in cols else "target_feature" if "target_feature" in cols else None
        if "id" not in cols or not xcol or not ycol:
            raise MinecliError(f"{path}: a CSV needs the columns id,x_feature,y_feature; found {','.join(cols)}")
        items = []
        for row in reader:
            xf, yf = Path(row[xcol]), Path(row[ycol])
            xf = xf if xf.is_absolute() else base / xf
            yf = yf if yf.is_absolute() else base / yf
            for f in (xf, yf):
                if not f.exists():
                    raise MinecliError(f"{path}: feature file of id {row['id']} not found: {f}")
            items.append(Item(id=row["id"], audio=None, x_file=str(xf), y_file=str(yf)))
            if limit and len(items) >= limit:
                break
    if not items:
        raise MinecliError(f"{path} lists no rows")
    return items


def prepare(config: str | os.PathLike[str], overrides: list[str] | None = None) -> Prepared:
    """Parse the config, build extractors (no weights) and read the splits."""
    cfg, doc, notes = load_config(config, overrides)
    extractors: dict[str, Extractor] = {}
    specs: dict[str, StreamSpec] = {}
    for side in ("x", "y"):
        sc: StreamConfig = getattr(cfg, side)
        cls = get_extractor_class(sc.extractor)
        extractors[side] = cls(cls.parse(sc.params, f"{side}.params"))
        specs[side] = extractors[side].spec()
    d = cfg.data
    items: dict[str, list[Item]] = {}
    source = "filelists"
    if d.train_csv:
        source = "csv"
        for side in ("x", "y"):
            if not hasattr(extractors[side], "load_file"):
                raise MinecliError(f"{side}.extractor: CSV input holds precomputed features; use extractor "
                                   "'precomputed' with its kind/dim/vocab_size params")
        for split in SPLITS:
            items[split] = read_seed_csv(getattr(d, f"{split}_csv"), d.features_dir, d.max_files)
    else:
        for split in SPLITS:
            items[split] = read_filelist(getattr(d, split), d.root, d.max_files)
        check_distinct_inputs(extractors, items)
    cache = Path(d.cache_dir or default_cache_dir())
    return Prepared(cfg, doc, notes, extractors, specs, items, cache, source)


def config_name(config: str | os.PathLike[str]) -> str:
    """The config file's stem, used for the default output folder."""
    return Path(config).stem


# ----------------------------------------------------------------------------- extraction
def _cache_key(ext: Extractor, audio: str) -> str:
    """Cache key of one utterance: the identity of the file the extractor reads.

    That is the audio file, except for extractors that read a file of their own (precomputed
    features), whose entry must follow that file, or rewritten features would never be read again;
    side files an extractor names in ``input_files`` (TextGrids, transcripts) join the key.
    """
    import hashlib

    from .cache import file_key

    feature_path = getattr(ext, "feature_path", None)
    key = file_key(feature_path(audio) if callable(feature_path) else audio)
    extra = [file_key(f) for f in ext.input_files(audio)]
    if not extra:
        return key
    return hashlib.sha1("\0".join([key, *extra]).encode()).hexdigest()


def _audio_loader(spec: StreamSpec) -> Any:
    """Read a file as ``[channels, samples]`` at the rate and channel count the stream asks for."""
    from .audio import load_for

    return lambda path: load_for(path, spec.sample_rate, spec.channels)


def _extract_side(prep: Prepared, side: str, progress: bool, share: "Shard") -> dict[str, Any]:
    """Fill the cache for one side over all splits, for this process's share of the files; returns counts."""
    from .cache import FeatureStore
    from .distributed import barrier, launched

    # Selections (first k codebooks, one codebook) are cut at load from the full output, cached once.
    ext = prep.extractors[side].full()
    spec = ext.spec()
    if prep.source == "csv":
        return {"extracted": 0, "cached": 0, "source": "csv"}
    train_audio = [it.audio for it in prep.items["train"] if it.audio]
    # Under torchrun rank 0 fits first (a codebook, a phone map) and saves it under the cache; the
    # other ranks then find it there instead of fitting the same thing again at the same time.
    first = launched().index == 0
    if first:
        ext.fit(train_audio, str(prep.cache_dir))
    barrier()
    if not first:
        ext.fit(train_audio, str(prep.cache_dir))
    store = FeatureStore(prep.cache_dir, ext)
    jobs = []
    for split in SPLITS:
        every = [it.audio for it in prep.items[split]]
        paths = [every[i] for i in share.take(every)]  # type: ignore[arg-type]
        jobs.append((split, paths, [_cache_key(ext, p) for p in paths]))  # type: ignore[arg-type]
    if any(store.missing(keys) for _, _, keys in jobs):
        # The device is resolved only when something is left to extract: a cache filled on GPU nodes
        # is used as is on a machine without one.
        _place(ext, prep.cfg.extraction, side)
    batch_size, max_samples = _batching(ext, prep.cfg.extraction, spec)
    extracted = total = 0
    skipped: list[str] | None = [] if prep.cfg.data.on_error == "skip" else None
    loader = _audio_loader(spec) if getattr(ext, "reads_audio", True) else None
    for split, paths, keys in jobs:
        total += len(keys)
        extracted += store.extract(paths, keys, loader, desc=f"extract {side}:{ext.name} [{split}]",
                                   progress=progress, skipped=skipped, batch_size=batch_size,
                                   max_batch_samples=max_samples)
    counts: dict[str, Any] = {"extracted": extracted, "cached": total - extracted - len(skipped or []),
                              "store": str(store.dir)}
    if skipped:
        counts["skipped"] = skipped
    if getattr(ext, "reads_audio", True) and share.index == 0:
        counts["conversion"] = conversion_note([it.audio for s in SPLITS for it in prep.items[s] if it.audio],
                                               spec.sample_rate, spec.channels, side)
    return counts


def _place(ext: Extractor, cfg: Any, side: str) -> None:
    """Put the extractor on its device: its own ``device`` param when set, else extraction.device."""
    from .devices import resolve_device

    own = getattr(ext.params, "device", None)
    ext.place(resolve_device(own or cfg.device, f"{side}.params.device" if own else "extraction.device"))


def _batching(ext: Extractor, cfg: Any, spec: StreamSpec) -> tuple[int, int | None]:
    """Utterances per batch and padded samples per batch for one extractor."""
    import torch

    on_gpu = torch.device(ext.device).type == "cuda"
    # The extractors' own batch sizes are measured on CPUs, where batching gains little; a GPU is
    # busy only with larger batches, which max_batch_seconds keeps within its memory.
    size = cfg.batch_size or (max(int(ext.batch_size), 16) if on_gpu else int(ext.batch_size))
    samples = int(cfg.max_batch_seconds * spec.sample_rate) if spec.sample_rate else None
    return size, samples


def extract_all(prep: Prepared, sides: tuple[str, ...] = ("x", "y"), progress: bool = True,
                shard: "Shard | None" = None) -> dict[str, Any]:
    """Extract (or find cached) features of every split for the given sides; skipped files leave every split.

    `shard` (``--shard i/n``) extracts every n-th file only; under torchrun each rank takes its share
    of that, the ranks wait for each other, and the counts are those of all ranks together.
    """
    from .distributed import barrier, gather, init_group, launched

    # run_config and extract_config have joined (and will leave) the group; a direct caller under
    # torchrun joins here, or its ranks could not wait for each other.
    init_group()
    share = launched().within(shard) if shard is not None else launched()
    counts = {side: _extract_side(prep, side, progress, share) for side in sides}
    # Every rank must be done before any pairs (reads) the cache.
    barrier()
    counts = _merge_counts(gather(counts))
    skipped = {p for c in counts.values() for p in c.get("skipped", [])}
    if skipped:
        prep.items = {s: [it for it in items if it.audio not in skipped] for s, items in prep.items.items()}
        prep.stats["skipped"] = sorted(skipped)
    return counts


def _merge_counts(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """One rank's counts, or the sum of several ranks' (rank 0 keeps its notes)."""
    merged = {side: dict(c) for side, c in per_rank[0].items()}
    for other in per_rank[1:]:
        for side, c in other.items():
            m = merged[side]
            m["extracted"] += c["extracted"]
            m["cached"] += c["cached"]
            if c.get("skipped"):
                m["skipped"] = sorted(set(m.get("skipped", [])) | set(c["skipped"]))
    if len(per_rank) > 1:
        for m in merged.values():
            m["processes"] = len(per_rank)
    return merged


def load_side(prep: Prepared, side: str, split: str) -> list[Any]:
    """The features of one side and split, one tensor per utterance."""
    from .cache import FeatureStore

    ext = prep.extractors[side]
    if prep.source == "csv":
        return [ext.load_file(getattr(it, f"{side}_file")) for it in prep.items[split]]  # type: ignore[attr-defined]
    full = ext.full()
    store = FeatureStore(prep.cache_dir, full)
    feats = store.load([_cache_key(full, it.audio) for it in prep.items[split]])  # type: ignore[arg-type]
    return feats if full is ext else [ext.select(t) for t in feats]


# ----------------------------------------------------------------------------- pairing
def build_banks(prep: Prepared) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Aligned frame banks of every split, normalised with train statistics; plus pairing stats."""
    from .data import FrameBank, normalize_banks
    from .pairing import align_pair, lag_in_frames, plan_alignment, shift_pair

    p = prep.cfg.pairing
    sx, sy = prep.specs["x"], prep.specs["y"]
    plan = plan_alignment(sx.frame_rate, sy.frame_rate, p.x_repeat, p.y_repeat)
    lag = lag_in_frames(p.lag_frames, p.lag_ms, plan.rate)
    banks: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for split in SPLITS:
        xs, ys = load_side(prep, "x", split), load_side(prep, "y", split)
        kept_x, kept_y, names, dropped = [], [], [], []
        for item, a, b in zip(prep.items[split], xs, ys):
            pair = align_pair(a, b, plan, sx.frame_rate, sy.frame_rate, p.max_length_diff)
            if pair is not None and lag:
                pair = shift_pair(*pair, lag)
            if pair is None or pair[0].shape[0] == 0:
                dropped.append({"id": item.id, "x_frames": int(a.shape[0]), "y_frames": int(b.shape[0])})
                continue
            kept_x.append(pair[0])
            kept_y.append(pair[1])
            names.append(item.id)
        stats[split] = {"utterances": len(kept_x), "dropped": len(dropped),
                        "frames": int(sum(t.shape[0] for t in kept_x)), "dropped_examples": dropped[:5]}
        if len(kept_x) < 2:
            raise MinecliError(f"the {split} split has {len(kept_x)} usable utterances after pairing "
                               f"({len(dropped)} dropped for lengths differing by more than "
                               f"pairing.max_length_diff={p.max_length_diff} frames); it needs at least 2. Check "
                               "the frame rates, or set pairing.x_repeat / y_repeat or max_length_diff")
        banks[split] = FrameBank.from_lists(kept_x, kept_y, names)
    norms = normalize_banks(banks, p.normalization)
    stats["alignment"] = {"mode": plan.mode, "x_repeat": plan.x_repeat, "y_repeat": plan.y_repeat,
                          "rate_hz": plan.rate, "describe": plan.describe(), "lag_frames": lag,
                          "lag_ms": lag * 1000.0 / plan.rate}
    stats["normalization"] = {k: v.state() for k, v in norms.items()}
    return banks, stats, plan


# ----------------------------------------------------------------------------- commands
def validate_config(config: str | os.PathLike[str], overrides: list[str] | None = None) -> str:
    """Check a config without loading weights; returns a human summary (raises on problems)."""
    prep = prepare(config, overrides)
    lines = [f"{config}: OK"]
    for side in ("x", "y"):
        lines.append(f"  {side}: {prep.extractors[side].name} -> {prep.specs[side].describe()}")
    from .pairing import plan_alignment

    p = prep.cfg.pairing
    plan = plan_alignment(prep.specs["x"].frame_rate, prep.specs["y"].frame_rate, p.x_repeat, p.y_repeat)
    from .pairing import lag_in_frames

    lag = lag_in_frames(p.lag_frames, p.lag_ms, plan.rate)
    lines.append(f"  pairing: {plan.describe()}" + (f"; y shifted by {lag:+d} frames (x[t] with y[t{lag:+d}])" if lag else ""))
    lines.append("  splits: " + ", ".join(f"{s} {len(prep.items[s])} files" for s in SPLITS))
    lines.append(f"  estimator: {prep.cfg.estimator.name}; cache: {prep.cache_dir}")
    from .reference import reference_kind
    from .trainer import build_critic

    cfg = prep.cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a run says these; validation only names the critic
        critic = build_critic(prep.specs["x"], prep.specs["y"], *cfg.contexts(), cfg.x.head, cfg.y.head, cfg.critic)
    lines.append(f"  critic: {critic.describe()}")
    kind = reference_kind(prep.specs["x"], prep.specs["y"], *cfg.contexts()) if cfg.critic.reference else None
    if kind:
        lines.append(f"  reference: {kind} (closed form, fitted on the train split; gives the estimate unless "
                     "the trained critic's validation, at its best checkpoint and either side, leads by more than half "
                     "a standard error)")
    lines.extend(f"  note: {n}" for n in prep.notes)
    return "\n".join(lines)


def extract_config(config: str | os.PathLike[str], overrides: list[str] | None = None, side: str = "both",
                   shard: "str | Shard | None" = None) -> str:
    """Only fill the feature cache (this job's shard of it with `shard` 'i/n'); returns a human summary."""
    from .distributed import close_group, init_group, launched, parse_shard

    if isinstance(shard, str):
        shard = parse_shard(shard)
    prep = prepare(config, overrides)
    sides = ("x", "y") if side == "both" else (side,)
    created = init_group()
    try:
        # One progress bar, rank 0's, rather than one per rank interleaved on the terminal.
        progress = prep.cfg.training.progress and launched().index == 0
        counts = extract_all(prep, sides, progress=progress, shard=shard)
    finally:
        close_group(created)
    where = f" ({shard.describe()})" if shard is not None and shard.count > 1 else ""
    return "\n".join(f"{s}: {prep.extractors[s].name}: {c['extracted']} extracted, {c['cached']} already cached"
                     + (f", {len(c['skipped'])} unreadable skipped" if c.get("skipped") else "")
                     + (f", by {c['processes']} processes" if c.get("processes") else "") + where
                     for s, c in counts.items())


def run_config(config: str | os.PathLike[str], overrides: list[str] | None = None) -> RunResult:
    """The whole job: extraction, pairing, training, held-out estimate, results on disk.

    Under torchrun (WORLD_SIZE > 1) every rank extracts its share of the files, then every rank pairs and
    trains under DistributedDataParallel, and all ranks share validation and the test scoring; rank 0 alone
    writes checkpoints and the results, and the other ranks return a result with ``primary`` False.
    """
    from .distributed import close_group, init_group

    created = init_group()
    try:
        with contextlib.ExitStack() as stack:
            return _run_config(config, overrides, stack)
    finally:
        close_group(created)


def _run_config(config: str | os.PathLike[str], overrides: list[str] | None, stack: contextlib.ExitStack) -> RunResult:
    """run_config with the output folder held (locked) until `stack` closes."""
    from .api import test_split_baseline
    from .interval import include_estimate
    from .report import write_results
    from .trainer import Trainer, entropy_report, result_warnings
    from .units import plan_units, window_ceilings

    from .distributed import launched

    t0 = time.perf_counter()
    prep = prepare(config, overrides)
    cfg = prep.cfg
    out_dir = Path(cfg.output.dir or os.path.join("runs", config_name(config)))
    rank = launched()
    primary = rank.index == 0
    if primary:
        claim_output_dir(out_dir, stack)
        write_text(out_dir / "config.resolved.yaml", yaml.safe_dump(prep.doc, sort_keys=False))
        for note in prep.notes:
            print(f"minecli: note: {note}", file=sys.stderr)
    counts = extract_all(prep, progress=cfg.training.progress and primary)
    t_extract = time.perf_counter() - t0
    # Every rank pairs the same cached features into the same banks (pairing is deterministic).
    banks, stats, plan = build_banks(prep)
    cx, cy = cfg.contexts()
    training = cfg.training
    if cfg.pairing.segment_length != training.segment_length:
        training = replace(training, segment_length=cfg.pairing.segment_length)
    if not primary:  # one progress bar, rank 0's
        training = replace(training, progress=False)
    trainer = Trainer(prep.specs["x"], prep.specs["y"], banks["train"], banks["valid"], banks["test"],
                      context_x=cx, context_y=cy, head_x=cfg.x.head, head_y=cfg.y.head, critic=cfg.critic,
                      estimator=cfg.estimator, training=training, checkpoint_dir=out_dir / "checkpoints",
                      save_every=cfg.output.save_every, resume=cfg.output.resume, config_doc=prep.doc,
                      distributed=rank.count > 1)
    t1 = time.perf_counter()
    trainer.fit()
    t_train = time.perf_counter() - t1
    final = trainer.estimate()  # every rank scores its share of the test split
    if not primary:
        done = ", ".join(f"{side}: {c['extracted']} extracted" for side, c in counts.items())
        summary = (f"rank {rank.index}/{rank.count}: extraction ({done}), training ({trainer.step} steps) and its "
                   "share of the test scoring done; rank 0 writes the results")
        return RunResult({"rank": rank.index, "extraction": counts, "training": {"steps_run": trainer.step}},
                         summary, out_dir, primary=False)
    units = plan_units(plan, prep.specs["x"].frame_rate, prep.specs["y"].frame_rate, cx, cy)
    entropy = window_ceilings(entropy_report(prep.specs["x"], prep.specs["y"], banks["test"]), units)
    baseline = test_split_baseline(banks["test"], prep.specs["x"], prep.specs["y"], final["correlation_length_frames"])
    if baseline and baseline.get("mi_nats") is not None:
        include_estimate(final, float(baseline["mi_nats"]), "baseline_nats")
    warns = result_warnings(final["mi_nats"], final["ci95_nats"], entropy, final["n_marginal"], trainer.estimator,
                            cfg.estimator.eval_negatives)
    warns += trainer_suspicions(trainer, final)
    doc = {
        "minecli_version": __version__,
        "config_file": str(config),
        "mi_nats": final["mi_nats"],
        "mi_bits": final["mi_nats"] / 0.6931471805599453,
        "ci95_nats": list(final["ci95_nats"]),
        "ci95_bits": [v / 0.6931471805599453 for v in final["ci95_nats"]],
        "ci95_test_noise_nats": list(final["ci95_test_noise_nats"]),
        "ci_terms": final["ci_terms"],
        "ci_method": final["ci_method"],
        "p_value_no_dependence": final["p_value"],
        "p_value_no_dependence_text": final["p_value_text"],
        "n_permutations": final["n_permutations"],
        "permutation_unit": final["permutation_unit"],
        "correlation_length_frames": final["correlation_length_frames"],
        "mi_nats_per_second": final["mi_nats"] * units.samples_per_second,
        "mi_bits_per_second": units.to_dict(final["mi_nats"])["mi_bits_per_second"],
        "aligned_frame_rate_hz": plan.rate,
        "units": units.to_dict(final["mi_nats"]),
        "estimator": cfg.estimator.name,
        "lower_bound": bool(trainer.estimator.lower_bound) and final["half_sample"] is None,
        "held_out_bound_nats": (final["half_sample"] or {}).get("held_out_bound_nats"),
        "half_sample": final["half_sample"],
        "critic": trainer.describe_critic(),
        "reference": trainer.reference_report,
        "streams": {s: {"extractor": prep.extractors[s].name, "spec": prep.specs[s].to_dict()} for s in ("x", "y")},
        "entropy": entropy,
        "baseline": baseline,
        "warnings": warns,
        "pairing": stats,
        "frames": {s: stats[s]["frames"] for s in SPLITS},
        "pairs_dropped": {s: stats[s]["dropped"] for s in SPLITS},
        "extraction": counts,
        "training": {"steps_run": trainer.step, "total_steps": trainer.total_steps, "best_step": trainer.best_step,
                     "best_valid_mi_nats": trainer.best_value, "stopped_early": trainer.stopped_early,
                     "stop_reason": trainer.stop_reason,
                     "pairs_per_second": trainer.step * trainer.pairs_per_step / max(trainer.train_seconds, 1e-9),
                     "precision": trainer.precision, "threads": trainer.threads, "device": str(trainer.device)},
        "history": trainer.history,
        "time_seconds": {"extraction": t_extract, "training": t_train, "total": time.perf_counter() - t0},
        "versions": _versions(),
        "config": prep.doc,
    }
    if trainer.world > 1:  # a step's batch was world x batch_size segments
        doc["training"]["processes"] = trainer.world
    note_inputs(doc, prep.stats.get("skipped", []), [c.get("conversion") for c in counts.values()], out_dir)
    flag_non_finite(doc)
    summary = write_results(out_dir, doc)
    require_finite(doc, out_dir)
    return RunResult(doc, summary, out_dir)


def _versions() -> dict[str, str]:
    """Versions of Python and the libraries behind the number; a failing probe is recorded, never raised."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    # Read from installed metadata, not by importing: a broken library (torchaudio's compiled ops
    # against the wrong torch) must not kill a run whose training is already done.
    for dist in ("torch", "torchaudio", "numpy", "encodec", "s3tokenizer", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - anything a probe raises is recorded
            out[dist] = f"unknown ({type(exc).__name__}: {exc})"
    return out

"""Contract checks for extractor plugins, to call from a plugin's own tests.

    from minecli.testing import check_extractor

    def test_my_tokens_keep_the_contract():
        check_extractor("my_tokens", {"n_codebooks": 2})

``check_extractor`` builds the extractor the way ``minecli run`` does, feeds it generated audio (a
chirp plus noise, so no files are needed) and raises ``AssertionError`` with a message naming the
broken rule. Extractors whose weights are not available can be handed in already built (e.g. after
``use_random_weights(seed)``, or through ``prepare=``); extractors that read side files (TextGrids,
``.npy`` features) get them from a ``setup`` callable that writes them next to each generated file.
"""
from __future__ import annotations

import builtins
import math
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.errors import MinecliError
from .core.interfaces import Extractor
from .core.registry import get_extractor_class, make_extractor
from .core.spec import StreamSpec

if TYPE_CHECKING:
    import torch

#: libraries that ``spec()`` (and building an extractor) must not import: they cost seconds and
#: ``minecli plugins list`` / ``minecli validate`` compute every spec
MODEL_LIBRARIES: tuple[str, ...] = (
    "torch", "torchaudio", "transformers", "encodec", "s3tokenizer", "onnxruntime", "pocketsphinx", "sklearn",
    "tensorflow", "jax", "fairseq", "speechbrain", "nemo", "whisper", "huggingface_hub",
)
#: an error raised from inside these packages is a crash, not a message written for the user
_LIBRARY_PACKAGES = frozenset(MODEL_LIBRARIES) | {"numpy", "scipy", "soundfile", "soxr"}
#: the rate used for generated audio when an extractor reads no audio (``spec().sample_rate`` is None)
FALLBACK_RATE = 16000
SHORT_SECONDS = 0.01

#: ``setup(audio_path, wave [channels, samples], sample_rate) -> path or None``: writes the side files an
#: extractor reads for one generated utterance; a returned path is passed to the extractor instead
Setup = Callable[[str, np.ndarray, int], "str | None"]
#: ``prepare(extractor)``: makes a freshly built extractor usable here, e.g. ``lambda e: e.use_random_weights(0)``
Prepare = Callable[[Extractor], None]


@dataclass
class ExtractorReport:
    """What check_extractor saw: the spec, frames of the main signal and the outcome of each edge case."""

    name: str
    spec: StreamSpec
    fingerprint: str
    frames: int
    expected_frames: float
    frame_tolerance: float
    edge_cases: dict[str, str] = field(default_factory=dict)


def make_chirp(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A deterministic test signal ``[channels, samples]`` float32: a 200-800 Hz chirp plus a little noise."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(channels):
        sig = 0.4 * np.sin(2 * np.pi * (200 + 600 * t) * t + 0.5 * c) + 0.02 * rng.standard_normal(n)
        rows.append(sig)
    return np.asarray(rows, dtype=np.float32).reshape(channels, n)


class _ImportWatch:
    """Records model libraries imported while active: newly loaded modules and import statements."""

    def __init__(self, libraries: tuple[str, ...]) -> None:
        self.libraries = frozenset(libraries)
        self.seen: set[str] = set()

    def __enter__(self) -> "_ImportWatch":
        self._before = set(sys.modules)
        self._original = builtins.__import__

        def watching(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            # An import statement of an already-loaded library leaves sys.modules unchanged, so the
            # statement itself is recorded too.
            if level == 0 and name.split(".")[0] in self.libraries:
                self.seen.add(name.split(".")[0])
            return self._original(name, globals, locals, fromlist, level)

        builtins.__import__ = watching
        return self

    def __exit__(self, *exc: Any) -> None:
        builtins.__import__ = self._original
        new = {m.split(".")[0] for m in set(sys.modules) - self._before}
        self.seen |= new & self.libraries


def gaussian_pair(n: int, d: int, rho: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """n samples of x, y in R^d with correlation rho per dimension pair, and their MI in nats."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))).astype(np.float32)
    return x, y, -0.5 * d * math.log(1 - rho**2)


def student_t_pair(n: int, d: int, nu: float, rho: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """n samples of x, y in R^d jointly Student-t (nu degrees of freedom, one mixing scale, correlation rho per
    dimension pair), and their MI in nats: the Gaussian part plus a term of nu and d (Arellano-Valle et al. 2013)."""
    from scipy.special import digamma, gammaln

    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, d))
    h = rho * g + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    w = np.sqrt(nu / rng.chisquare(nu, n))[:, None]
    extra = (gammaln(nu / 2) + gammaln((nu + 2 * d) / 2) - 2 * gammaln((nu + d) / 2)
             + 2 * ((nu + d) / 2) * digamma((nu + d) / 2) - (nu / 2) * digamma(nu / 2)
             - ((nu + 2 * d) / 2) * digamma((nu + 2 * d) / 2))
    mi = -0.5 * d * math.log(1 - rho**2) + float(extra)
    return (g * w).astype(np.float32), (h * w).astype(np.float32), mi


def all_pairs_bound(scores: Any, block: np.ndarray | None = None) -> float:
    """The DV bound of a fixed critic from its scores ``[n, n]`` of x_i against y_j: the diagonal holds the
    joint pairs, every other cell a marginal one (outside x_i's own block, when ``block`` gives each frame's
    block of a serially correlated series)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    pos = float(np.mean(np.diag(scores)))
    off = scores.copy()
    same = np.eye(n, dtype=bool) if block is None else block[:, None] == block[None, :]
    off[same] = -np.inf
    return pos - (float(np.logaddexp.reduce(off, axis=None)) - math.log(n * n - int(same.sum())))


def ar1_frames(n: int, tau: float, rng: np.random.Generator, d: int = 2) -> np.ndarray:
    """AR(1) frames ``[n, d]`` with unit variance whose autocorrelation is exp(-lag / tau): serially
    correlated features with a known correlation length, for tests of resampling and splits."""
    phi = math.exp(-1 / tau)
    e = rng.standard_normal((n, d)) * math.sqrt(1 - phi**2)
    out = np.empty((n, d))
    out[0] = rng.standard_normal(d)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out.astype(np.float32)


def _clear_error(exc: BaseException) -> bool:
    """A ValueError or MinecliError with a message, raised by the extractor's code, not inside a library."""
    if not isinstance(exc, (ValueError, MinecliError)) or not str(exc).strip():
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return module.split(".")[0] not in _LIBRARY_PACKAGES


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _Checker:
    """One run of the checks against one extractor."""

    def __init__(self, label: str, ext: Extractor, spec: StreamSpec, tolerance: float, setup: Setup | None,
                 workdir: Path, seconds: float, seed: int) -> None:
        self.label = label
        self.ext = ext
        self.spec = spec
        self.tolerance = tolerance
        self.setup = setup
        self.workdir = workdir
        self.seconds = seconds
        self.seed = seed
        self.rate = spec.sample_rate or FALLBACK_RATE
        self.reads_audio = bool(getattr(ext, "reads_audio", True))
        self._count = 0

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"extractor '{self.label}': {message}")

    def utterance(self, wave: np.ndarray, rate: int, tag: str) -> str:
        """Write a generated wave as a WAV file (plus the setup's side files); returns the path to pass."""
        import soundfile as sf

        self._count += 1
        path = self.workdir / f"{tag}-{self._count:02d}.wav"
        sf.write(str(path), wave.T, rate, subtype="FLOAT")
        if self.setup is not None:
            try:
                other = self.setup(str(path), wave, rate)
            except Exception as exc:
                raise self.fail(f"the setup callable failed for {path.name}: {_describe(exc)}") from exc
            if other is not None:
                return str(other)
        return str(path)

    def call(self, wave: np.ndarray, rate: int, path: str) -> Any:
        """Call the extractor the way the pipeline feeds it (no samples when it reads no audio)."""
        import torch

        if not self.reads_audio:
            return self.ext(torch.zeros(self.spec.channels, 0), self.spec.sample_rate or 0, path=path)
        return self.ext(torch.from_numpy(wave), rate, path=path)

    def output(self, out: Any, seconds: float, what: str) -> "torch.Tensor":
        """Check one output against the spec and the duration; returns it."""
        import torch

        spec = self.spec
        if not isinstance(out, torch.Tensor):
            raise self.fail(f"{what}: returned {type(out).__name__}, not a torch.Tensor")
        if out.dim() != 2:
            raise self.fail(f"{what}: returned shape {tuple(out.shape)}; the contract is [frames, "
                            f"{'dim' if spec.kind == 'float' else 'n_codebooks'}] ([T, {spec.width}])")
        if out.shape[1] != spec.width:
            field_name = "dim" if spec.kind == "float" else "n_codebooks"
            raise self.fail(f"{what}: returned {out.shape[1]} columns, but spec().{field_name} is {spec.width}")
        if spec.kind == "float":
            if out.dtype != torch.float32:
                raise self.fail(f"{what}: returned {out.dtype}; a float stream must be torch.float32")
            if not torch.isfinite(out).all():
                bad = int((~torch.isfinite(out)).sum())
                raise self.fail(f"{what}: returned {bad} NaN or infinite values (clamp before a log, guard divisions)")
        else:
            if out.dtype != torch.int64:
                raise self.fail(f"{what}: returned {out.dtype}; an index stream must be torch.int64")
            if out.numel() and (int(out.min()) < 0 or int(out.max()) >= int(spec.vocab_size)):  # type: ignore[arg-type]
                raise self.fail(f"{what}: token ids span [{int(out.min())}, {int(out.max())}], outside "
                                f"[0, {spec.vocab_size}) of spec().vocab_size")
        expected = seconds * spec.frame_rate
        if abs(out.shape[0] - expected) > self.tolerance:
            raise self.fail(f"{what}: {out.shape[0]} frames for {seconds:g} s at {spec.frame_rate:g} Hz, expected "
                            f"{expected:g} +- {self.tolerance:g}; a model that pads or trims declares "
                            "frame_tolerance = N on its class")
        return out

    def guarded(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run fn; any exception becomes an AssertionError naming the step (the cause stays chained)."""
        try:
            return fn()
        except AssertionError:
            raise
        except Exception as exc:
            raise self.fail(f"{what} raised {_describe(exc)}") from exc

    def edge_case(self, what: str, wave: np.ndarray, seconds: float) -> str:
        """Run an edge case that must either work or fail with a clear message."""
        path = self.utterance(wave, self.rate, what.split()[0])
        try:
            out = self.call(wave, self.rate, path)
        except Exception as exc:
            if _clear_error(exc):
                return f"error: {_describe(exc)}"
            raise self.fail(f"{what}: raised {_describe(exc)} from inside a library; it must either work or raise "
                            "a ValueError / minecli.MinecliError whose message says what is wrong") from exc
        out = self.output(out, seconds, what)
        return f"ok ({out.shape[0]} frames)"


def check_extractor(name: str | None = None, params: dict[str, Any] | None = None, *,
                    extractor: Extractor | None = None, prepare: Prepare | None = None, setup: Setup | None = None,
                    seconds: float = 1.0, frame_tolerance: float | None = None, seed: int = 0,
                    model_libraries: tuple[str, ...] = MODEL_LIBRARIES,
                    workdir: str | Path | None = None) -> ExtractorReport:
    """Check that an extractor keeps minecli's contract; raises AssertionError naming the broken rule.

    Give the registry ``name`` (and ``params``), or an already built ``extractor`` (e.g. one with random
    weights). ``prepare(extractor)`` runs on the freshly built extractor before anything is extracted;
    ``setup(audio_path, wave, sample_rate)`` writes side files for each generated utterance.
    ``frame_tolerance`` overrides the extractor's own (``Extractor.frame_tolerance``, 1 frame).

    Checked: spec() is a StreamSpec computed without importing model libraries; fit() and
    fingerprint() work; on a ``seconds``-long chirp the output is a 2-d tensor whose dtype, width and
    vocabulary match the spec, with duration x frame_rate frames within the tolerance and no NaN; two
    calls give the same output; extract_batch equals one call per utterance; silent and 10 ms audio
    either work or raise a clear ValueError/MinecliError; audio at the wrong rate raises a ValueError
    that names both rates.
    """
    if extractor is None and name is None:
        raise TypeError("check_extractor needs the registry name of an extractor, or extractor=")
    if extractor is not None and params is not None:
        raise TypeError("give params or an already built extractor=, not both")
    label = name or extractor.name  # type: ignore[union-attr]

    # 1. The spec, from a fresh instance, without weights or model libraries.
    watch = _ImportWatch(model_libraries)
    try:
        with watch:
            fresh = type(extractor)(extractor.params) if extractor is not None else make_extractor(name, params)  # type: ignore[arg-type]
            spec = fresh.spec()
            again = fresh.spec()
    except Exception as exc:
        raise AssertionError(f"extractor '{label}': building it with params {params or {}} or computing spec() "
                             f"raised {_describe(exc)}") from exc
    if not isinstance(spec, StreamSpec):
        raise AssertionError(f"extractor '{label}': spec() returned {type(spec).__name__}, not a minecli.StreamSpec")
    if again != spec:
        raise AssertionError(f"extractor '{label}': spec() is not stable: {spec} then {again}")
    if watch.seen:
        raise AssertionError(f"extractor '{label}': building it and computing spec() imported "
                             f"{', '.join(sorted(watch.seen))}; spec() must be computable without weights or model "
                             "libraries (move those imports into load() or __call__)")
    if name is not None and extractor is None and get_extractor_class(name) is not type(fresh):
        raise AssertionError(f"extractor '{label}': make_extractor built {type(fresh).__name__}")

    # 2. The extractor that runs, built the way the pipeline builds it.
    ext = extractor if extractor is not None else make_extractor(name, params)  # type: ignore[arg-type]
    if prepare is not None:
        prepare(ext)
    if getattr(ext, "reads_audio", True) and spec.sample_rate is None:
        raise AssertionError(f"extractor '{label}': it reads audio, so spec().sample_rate must say at which rate")
    tolerance = float(frame_tolerance if frame_tolerance is not None else getattr(ext, "frame_tolerance", 1.0))

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="minecli-check-")
        workdir = tmp.name
    try:
        return _run_checks(label, ext, spec, tolerance, setup, Path(workdir), seconds, seed)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run_checks(label: str, ext: Extractor, spec: StreamSpec, tolerance: float, setup: Setup | None,
                workdir: Path, seconds: float, seed: int) -> ExtractorReport:
    import torch

    ck = _Checker(label, ext, spec, tolerance, setup, workdir, seconds, seed)
    rate, channels = ck.rate, spec.channels

    # fit() on a small generated train split, then the fingerprint that keys the cache.
    train = [ck.utterance(make_chirp(seconds, rate, channels, seed + 1 + i), rate, "train") for i in range(3)]
    ck.guarded("fit() on generated train audio", lambda: ext.fit(train, str(workdir / "cache")))
    ck.guarded("load()", ext.ensure_loaded)
    fingerprint = ck.guarded("fingerprint()", ext.fingerprint)
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", fingerprint):
        raise ck.fail(f"fingerprint() returned {fingerprint!r}; it names a cache folder, so it must be a short "
                      "string of letters, digits, '_', '.' or '-'")
    if ext.fingerprint() != fingerprint:
        raise ck.fail("fingerprint() changes between calls; the cache would never be found again")

    # The main signal: shape, dtype, vocabulary, frames, no NaN; then determinism.
    wave = make_chirp(seconds, rate, channels, seed)
    path = ck.utterance(wave, rate, "chirp")
    what = f"{seconds:g} s chirp at {rate} Hz"
    out = ck.output(ck.guarded(what, lambda: ck.call(wave, rate, path)), seconds, what)
    again = ck.guarded(f"{what} (second call)", lambda: ck.call(wave, rate, path))
    if not (isinstance(again, torch.Tensor) and again.shape == out.shape and torch.equal(again, out)):
        raise ck.fail(f"{what}: two calls on the same audio gave different outputs; extraction must be "
                      "deterministic (eval() mode, no dropout, fixed seeds), or the cache mixes runs")

    # extract_batch, which the pipeline uses, must agree with one call per utterance.
    short_seconds = round(seconds * 0.6, 3)
    wave_b = make_chirp(short_seconds, rate, channels, seed + 7)
    path_b = ck.utterance(wave_b, rate, "chirp")
    if ck.reads_audio:
        waves = [torch.from_numpy(wave), torch.from_numpy(wave_b)]
        batch_rate = rate
    else:
        waves = [torch.zeros(channels, 0), torch.zeros(channels, 0)]
        batch_rate = spec.sample_rate or 0
    outs = ck.guarded("extract_batch", lambda: ext.extract_batch(waves, batch_rate, [path, path_b]))
    if not isinstance(outs, (list, tuple)) or len(outs) != 2:
        raise ck.fail(f"extract_batch of 2 utterances returned {type(outs).__name__} of length "
                      f"{len(outs) if hasattr(outs, '__len__') else '?'}; it must return one tensor per utterance")
    single_b = ck.output(ck.guarded(f"{short_seconds:g} s chirp", lambda: ck.call(wave_b, rate, path_b)),
                         short_seconds, f"{short_seconds:g} s chirp")
    for i, (got, alone, secs) in enumerate(((outs[0], out, seconds), (outs[1], single_b, short_seconds))):
        got = ck.output(got, secs, f"extract_batch item {i}")
        if got.shape != alone.shape or not _same(got, alone):
            raise ck.fail(f"extract_batch item {i} ({secs:g} s) differs from calling the extractor on it alone "
                          f"(shapes {tuple(got.shape)} and {tuple(alone.shape)}); padding must not leak into "
                          "the frames, or batch only where it is exact")

    edges = {
        "silence": ck.edge_case(f"silence ({seconds:g} s of zeros)", np.zeros((channels, wave.shape[1]), np.float32),
                                seconds),
        "short": ck.edge_case(f"short audio ({SHORT_SECONDS * 1000:g} ms)",
                              make_chirp(SHORT_SECONDS, rate, channels, seed), SHORT_SECONDS),
    }

    # Audio at another rate must be refused with a message that names both rates.
    if spec.sample_rate is None or not ck.reads_audio:
        edges["wrong_rate"] = "skipped: the extractor reads no audio"
    else:
        wrong = 8000 if spec.sample_rate != 8000 else 16000
        bad = make_chirp(seconds, wrong, channels, seed)
        bad_path = ck.utterance(bad, wrong, "wrongrate")
        try:
            ck.call(bad, wrong, bad_path)
        except ValueError as exc:
            msg = str(exc)
            if str(spec.sample_rate) not in msg or str(wrong) not in msg:
                raise ck.fail(f"audio at {wrong} Hz raised ValueError({msg!r}); the message must name the rate "
                              f"expected ({spec.sample_rate}) and the rate given ({wrong})") from exc
            edges["wrong_rate"] = f"error: {_describe(exc)}"
        except Exception as exc:
            raise ck.fail(f"audio at {wrong} Hz instead of {spec.sample_rate} Hz raised {_describe(exc)}; it must "
                          "raise a ValueError naming both rates") from exc
        else:
            raise ck.fail(f"audio at {wrong} Hz was accepted although spec().sample_rate is {spec.sample_rate}; "
                          "raise a ValueError naming both rates")

    return ExtractorReport(label, spec, fingerprint, int(out.shape[0]), seconds * spec.frame_rate, tolerance, edges)


def invoke_cli(*args: str) -> Any:
    """Run ``minecli ARGS...`` in-process and return click's ``Result`` (stdout and stderr kept apart)."""
    from click.testing import CliRunner

    from .cli import cli

    try:  # click 8.1 mixes stderr into stdout unless told not to; 8.2 always keeps them apart
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args), catch_exceptions=False)


def _same(a: "torch.Tensor", b: "torch.Tensor") -> bool:
    """Equal index streams; float streams equal up to float32 rounding of a differently shaped batch."""
    import torch

    if not a.dtype.is_floating_point:
        return bool(torch.equal(a, b))
    if a.numel() == 0:
        return True
    scale = max(1.0, float(b.abs().max()))
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * scale)) and math.isfinite(scale)


__all__ = ["ExtractorReport", "MODEL_LIBRARIES", "all_pairs_bound", "ar1_frames", "check_extractor", "gaussian_pair",
           "invoke_cli", "make_chirp", "student_t_pair"]

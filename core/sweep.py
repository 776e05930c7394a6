"""``minecli sweep``: one run per point of a grid of config values, then one table and one plot.

Each point runs in its own folder under the sweep folder; a point whose folder holds a results.json
is done and is read, not run again, so an interrupted sweep continues where it stopped. Every point
shares the feature cache of the config, so features are extracted once. A point that fails becomes
a row with its reason.
"""
from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, MinecliError
from .plots import plot_sweep
from .tables import RESULT_COLUMNS, failed_row, read_results, result_row, write_table


@dataclass(frozen=True)
class Axis:
    """One swept key and its values (as given on the command line, read as YAML by the config)."""

    key: str
    values: tuple[str, ...]


@dataclass
class SweepResult:
    """What a sweep produced: its folder, the rows of the table and the files written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    columns: list[str]
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        """The Markdown table and where the files are."""
        from .tables import to_markdown

        done = sum(r["status"] == "ok" for r in self.rows)
        lines = [to_markdown(self.rows, [c for c in self.columns if c not in ("per", "frames_train")]).rstrip(),
                 f"{done} of {len(self.rows)} points finished; table {self.files['csv']} (and .md, .json), "
                 f"plot {self.files['png']}"]
        return "\n".join(lines)


def split_values(text: str) -> list[str]:
    """Split 'a,b,[1,2]' on commas outside brackets and quotes: ['a', 'b', '[1,2]']."""
    out, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_axes(specs: Sequence[str]) -> list[Axis]:
    """``key=v1,v2,...`` arguments as axes; every problem is reported at once."""
    axes, problems, seen = [], [], set()
    for spec in specs:
        key, sep, rest = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"sweep axis {spec!r} is not KEY=V1,V2,... (e.g. pairing.lag_frames=-2,0,2)")
            continue
        values = split_values(rest)
        if any(v == "" for v in values):
            problems.append(f"sweep axis {spec!r} has an empty value; separate values by single commas")
            continue
        if key in seen:
            problems.append(f"sweep key {key!r} is given twice; list all its values in one KEY=V1,V2,...")
            continue
        seen.add(key)
        axes.append(Axis(key, tuple(values)))
    if problems:
        raise ConfigError(problems)
    if not axes:
        raise ConfigError("give at least one KEY=V1,V2,... to sweep (e.g. pairing.lag_frames=-2,0,2)")
    return axes


def grid(axes: Sequence[Axis], zipped: bool = False) -> list[dict[str, str]]:
    """The points of the sweep: the cartesian product of the axes, or (zipped) their i-th values together."""
    if zipped:
        lengths = {len(a.values) for a in axes if len(a.values) > 1}
        if len(lengths) > 1:
            sizes = ", ".join(f"{a.key} has {len(a.values)}" for a in axes)
            raise ConfigError(f"--zip needs the same number of values on every axis ({sizes}); give each key as many "
                              "values, or drop --zip for the cartesian product")
        n = lengths.pop() if lengths else 1
        return [{a.key: a.values[i if len(a.values) > 1 else 0] for a in axes} for i in range(n)]
    return [dict(zip([a.key for a in axes], combo)) for combo in itertools.product(*[a.values for a in axes])]


def point_name(point: dict[str, str], varied: Sequence[str]) -> str:
    """A folder name for a point: its varied keys and values, e.g. 'pairing.lag_frames=-2'."""
    parts = [f"{k}={point[k]}" for k in varied] or ["point"]
    return re.sub(r"[^\w.=+\-,\[\]]", "_", "__".join(parts))


def default_out_dir(config: str, axes: Sequence[Axis]) -> Path:
    """runs/<config stem>-sweep-<last part of each varied key>."""
    keys = [a.key.split(".")[-1] for a in axes if len(a.values) > 1] or [axes[0].key.split(".")[-1]]
    return Path("runs") / f"{Path(config).stem}-sweep-{'-'.join(keys)}"


def _echo(line: str) -> None:
    # stderr, one line per point, flushed: progress shows when stdout is a file or a pipe
    print(line, file=sys.stderr, flush=True)


def run_sweep(config: str, axes: Sequence[Axis], overrides: Sequence[str] = (), out_dir: str | Path | None = None,
              zipped: bool = False, runner: Callable[..., Any] | None = None,
              echo: Callable[[str], None] = _echo) -> SweepResult:
    """Run (or read, when finished) every point of the grid; write the table and the plot after each point."""
    from .pipeline import run_config

    runner = runner or run_config
    points = grid(axes, zipped)
    varied = [a.key for a in axes if len(a.values) > 1] or [axes[0].key]
    _check_configs(config, points, overrides)
    out = Path(out_dir) if out_dir else default_out_dir(config, axes)
    out.mkdir(parents=True, exist_ok=True)
    columns = [*varied, "run", *RESULT_COLUMNS]
    rows: list[dict[str, Any]] = []
    files = {"csv": out / "sweep.csv", "png": out / "sweep.png"}
    echo(f"minecli sweep: {len(points)} points of {', '.join(varied)} in {out}")
    for i, point in enumerate(points, 1):
        run_dir = out / point_name(point, varied)
        label = ", ".join(f"{k}={point[k]}" for k in varied)
        head = {**{k: point[k] for k in varied}, "run": run_dir.name}
        doc = read_results(run_dir)
        t0 = time.perf_counter()
        if doc is not None:
            rows.append({**head, **result_row(doc)})
            echo(f"[{i}/{len(points)}] {label}: done before, {doc['mi_nats']:.4f} nats")
        else:
            echo(f"[{i}/{len(points)}] {label}: running")
            args = [*overrides, *(f"{k}={v}" for k, v in point.items()), f"output.dir={run_dir}"]
            try:
                doc = runner(config, args).document
            except KeyboardInterrupt:
                _write(out, rows, columns, varied, config, files)
                raise
            except MinecliError as exc:
                rows.append({**head, **failed_row(str(exc))})
                echo(f"[{i}/{len(points)}] {label}: FAILED: {rows[-1]['reason']}")
            except Exception as exc:  # noqa: BLE001 - one broken point must not lose the others
                rows.append({**head, **failed_row(f"{type(exc).__name__}: {exc}")})
                echo(f"[{i}/{len(points)}] {label}: FAILED: {rows[-1]['reason']}")
            else:
                rows.append({**head, **result_row(doc)})
                lo, hi = doc["ci95_nats"]
                echo(f"[{i}/{len(points)}] {label}: {doc['mi_nats']:.4f} nats [{lo:.4f}, {hi:.4f}], "
                     f"{doc['mi_bits_per_second']:.1f} bits/s, {time.perf_counter() - t0:.1f} s")
        _write(out, rows, columns, varied, config, files)
    return SweepResult(out, rows, columns, files)


def _check_configs(config: str, points: list[dict[str, str]], overrides: Sequence[str]) -> None:
    """Raise the first config error when every point's config is invalid (a typo in a key, not a point
    that fails on its own); otherwise invalid points become rows when they run."""
    from .config import load_config

    first: MinecliError | None = None
    for point in points:
        try:
            load_config(config, [*overrides, *(f"{k}={v}" for k, v in point.items())])
            return
        except MinecliError as exc:
            first = first or exc
    if first is not None:
        raise first


def _write(out: Path, rows: list[dict[str, Any]], columns: list[str], varied: list[str], config: str,
           files: dict[str, Path]) -> None:
    """The table (CSV, Markdown, JSON) and the plot of the rows so far."""
    write_table(out / "sweep", rows, columns, {"config": str(config), "varied": varied})
    if rows:
        group = None
        if len(varied) > 1:
            # one line per combination of the other varied keys
            group = "_line"
            rows = [{**r, group: ", ".join(f"{k}={r[k]}" for k in varied[1:])} for r in rows]
        plot_sweep(files["png"], rows, varied[0], group, title=f"{Path(config).stem}: MI against {varied[0]}")

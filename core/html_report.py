"""``minecli report``: finished runs side by side, as a table, a bar chart and one self-contained HTML page.

Arguments are run folders (holding results.json) or folders of runs (a sweep or depth folder, whose
table and plot join the page). Images are embedded as base64 data URIs, so the page reads offline
and can be mailed as one file.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MinecliError
from .io import write_text
from .plots import plot_bars
from .tables import read_results, result_row, to_markdown, write_table

COLUMNS = ("run", "x", "y", "estimator", "mi_nats", "mi_bits", "ci95_lo_nats", "ci95_hi_nats", "held_out_bound_nats",
           "mi_bits_per_second", "per", "ceiling_x_nats", "ceiling_y_nats", "frames_test", "seconds", "critic")


@dataclass
class Group:
    """A folder of runs given on the command line (a sweep or depth folder), with its own table and plot."""

    path: Path
    tables: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


@dataclass
class Report:
    """What ``minecli report`` wrote."""

    out_dir: Path
    rows: list[dict[str, Any]]
    files: dict[str, Path]

    def summary(self) -> str:
        """The table and where the page is."""
        cols = ["run", "mi_nats", "ci95_lo_nats", "ci95_hi_nats", "mi_bits", "mi_bits_per_second", "per"]
        return (to_markdown(self.rows, cols).rstrip() + f"\n{len(self.rows)} runs; page {self.files['html']}, "
                f"chart {self.files['png']}, table {self.files['csv']} (and .md, .json)")


def _run_row(run_dir: Path, doc: dict[str, Any], label: str) -> dict[str, Any]:
    streams = doc.get("streams") or {}

    def stream(side: str) -> str:
        s = streams.get(side) or {}
        spec = s.get("spec") or {}
        size = f"{spec.get('dim')}-d" if spec.get("kind") == "float" else \
            f"{spec.get('n_codebooks', 1)}x{spec.get('vocab_size')}"
        return f"{s.get('extractor', '?')} ({size} @ {spec.get('frame_rate', '?')} Hz)"

    return {"run": label, "path": str(run_dir), "x": stream("x"), "y": stream("y"),
            "estimator": doc.get("estimator"), "critic": doc.get("critic"), **result_row(doc)}


def collect(paths: list[str | Path]) -> tuple[list[tuple[Path, dict[str, Any]]], list[Group]]:
    """Finished runs under the given folders (in order) and the folders of runs among them."""
    runs: list[tuple[Path, dict[str, Any]]] = []
    groups: list[Group] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise MinecliError(f"report: {p} is not a folder; give run folders (with results.json) or sweep folders")
        doc = read_results(p)
        if doc is not None:
            runs.append((p, doc))
            continue
        found = [(d, read_results(d)) for d in sorted(q for q in p.iterdir() if q.is_dir())]
        found = [(d, r) for d, r in found if r is not None]
        if not found:
            raise MinecliError(f"report: {p} holds no finished run (no results.json in it or its subfolders); "
                               "run it first, or give the folder of a finished run")
        runs.extend(found)
        groups.append(Group(p, [t for t in (p / "sweep.md", p / "depth.md") if t.is_file()],
                            [i for i in (p / "sweep.png", p / "depth.png") if i.is_file()]))
    return runs, groups


def _labels(paths: list[Path]) -> list[str]:
    """Folder names, with the parent's name added where two runs share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt(value: Any, column: str) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if column in ("mi_bits_per_second", "seconds") else f"{value:.4f}"
    return "" if value is None else str(value)


def _html_table(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), c))}</td>" for c in columns) + "</tr>\n"
                   for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


_STYLE = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
img{max-width:100%;margin:1em 0}.note{color:#555;font-size:13px}"""


def render_html(rows: list[dict[str, Any]], chart: Path, groups: list[Group], title: str) -> str:
    """One self-contained page: the table of runs, the bar chart and every group's table and plot."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}</title>"
             f"\n<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">{len(rows)} finished runs, written {time.strftime('%Y-%m-%d %H:%M')}. MI is in nats "
             "per sample (a frame, or a context window where per is 'window'): each run's held-out bound on its test "
             "split, a lower bound, or where a closed-form critic gave it that bound extrapolated to unlimited "
             "training data (results.json, half_sample), with its 95% interval; bits/s count non-overlapping samples per second of audio "
             "(results.json, units.per_second_definition).</p>",
             "<h2>Runs</h2>", _html_table(rows, COLUMNS),
             f"<h2>MI by run</h2>\n<img alt=\"MI by run\" src=\"{_data_uri(chart)}\">"]
    for g in groups:
        parts.append(f"<h2>{html.escape(str(g.path))}</h2>")
        for img in g.images:
            parts.append(f"<img alt=\"{html.escape(img.name)}\" src=\"{_data_uri(img)}\">")
        for t in g.tables:
            table = t.with_suffix(".json")
            if table.is_file():
                doc = json.loads(table.read_text(encoding="utf-8"))
                parts.append(_html_table(doc["rows"], doc["columns"]))
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


def write_report(paths: list[str | Path], out_dir: str | Path | None = None, title: str = "minecli report") -> Report:
    """Collect finished runs and write report.csv/.md/.json, report.png and report.html."""
    runs, groups = collect(paths)
    out = Path(out_dir) if out_dir else Path("runs") / "report"
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels([p for p, _ in runs])
    rows = [_run_row(p, doc, label) for (p, doc), label in zip(runs, labels)]
    write_table(out / "report", rows, [*COLUMNS, "path"])
    chart = out / "report.png"
    plot_bars(chart, labels, [r["mi_nats"] for r in rows], [r["ci95_lo_nats"] for r in rows],
              [r["ci95_hi_nats"] for r in rows], title=title)
    page = out / "report.html"
    write_text(page, render_html(rows, chart, groups, title))
    return Report(out, rows, {"html": page, "png": chart, "csv": out / "report.csv"})

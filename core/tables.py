"""Tables of finished runs: one row per results document, written as CSV, Markdown and strict JSON."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import write_text

#: result columns of every table, after the columns that name the run (swept values, run folder)
RESULT_COLUMNS = ("status", "mi_nats", "mi_bits", "ci95_lo_nats", "ci95_hi_nats", "held_out_bound_nats",
                  "mi_bits_per_second", "samples_per_second", "per", "ceiling_x_nats", "ceiling_y_nats", "frames_train", "frames_test",
                  "seconds", "reason")


def result_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The table columns of one results.json document."""
    lo, hi = doc["ci95_nats"]
    units = doc.get("units") or {}
    ctx = units.get("context_frames") or {}
    ent = doc.get("entropy") or {}

    def ceiling(side: str) -> float | None:
        e = ent.get(side)
        return None if not e else e.get("ceiling_nats", e.get("plugin_entropy_nats"))

    frames = doc.get("frames") or {}
    return {
        "status": "ok", "mi_nats": doc["mi_nats"], "mi_bits": doc["mi_bits"], "ci95_lo_nats": lo, "ci95_hi_nats": hi,
        # the bound before the correction for the train split's size, when the run made one (else mi_nats is that bound)
        "held_out_bound_nats": doc.get("held_out_bound_nats"),
        "mi_bits_per_second": doc.get("mi_bits_per_second"), "samples_per_second": units.get("samples_per_second"),
        "per": "frame" if (ctx.get("x", 1), ctx.get("y", 1)) == (1, 1) else "window",
        "ceiling_x_nats": ceiling("x"), "ceiling_y_nats": ceiling("y"),
        "frames_train": frames.get("train"), "frames_test": frames.get("test"),
        "seconds": (doc.get("time_seconds") or {}).get("total"), "reason": "",
    }


def failed_row(reason: str) -> dict[str, Any]:
    """The row of a run that did not finish, with its reason on one line."""
    row: dict[str, Any] = {c: None for c in RESULT_COLUMNS}
    row.update(status="failed", reason=" ".join(str(reason).split()))
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return f"{value:.6g}"
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text (empty cells for missing values)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def _md_cell(value: Any, column: str) -> str:
    if isinstance(value, float) and math.isfinite(value):
        digits = 1 if column in ("mi_bits_per_second", "seconds", "samples_per_second") else 4
        return f"{value:.{digits}f}"
    return _cell(value).replace("|", "\\|")


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as a Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_md_cell(r.get(c), c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def strict(value: Any) -> Any:
    """A copy with non-finite floats as null, so the JSON is strict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def write_table(stem: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                extra: dict[str, Any] | None = None) -> None:
    """Write ``stem``.csv, ``stem``.md and ``stem``.json (strict JSON: the rows and `extra`)."""
    write_text(stem.with_suffix(".csv"), to_csv(rows, columns))
    write_text(stem.with_suffix(".md"), to_markdown(rows, columns))
    doc = {"columns": list(columns), "rows": [{c: r.get(c) for c in columns} for r in rows], **(extra or {})}
    write_text(stem.with_suffix(".json"), json.dumps(strict(doc), indent=2, allow_nan=False, default=str) + "\n")


def read_results(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's results.json, or None when the run has not finished (or the file is damaged)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "mi_nats" in doc else None

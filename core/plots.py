"""PNG plots of tables of runs: MI against a swept value, bars of runs side by side, codebook depth."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import atomic_write


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _ok(row: dict[str, Any]) -> bool:
    return row.get("status") == "ok" and _number(row.get("mi_nats")) is not None


def plot_sweep(path: Path, rows: Sequence[dict[str, Any]], x_key: str, group_key: str | None = None,
               title: str = "") -> None:
    """MI (nats) against the values of `x_key`, with 95% interval bars; one line per `group_key` value."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    ok = [r for r in rows if _ok(r)]
    values = list(dict.fromkeys(str(r[x_key]) for r in rows))
    numeric = all(_number(v) is not None for v in values)
    groups = list(dict.fromkeys(str(r[group_key]) for r in ok)) if group_key else [None]
    for g in groups:
        pts = [r for r in ok if group_key is None or str(r[group_key]) == g]
        xs = [_number(r[x_key]) if numeric else values.index(str(r[x_key])) for r in pts]
        order = sorted(range(len(pts)), key=lambda i: xs[i])
        xs = [xs[i] for i in order]
        mi = [float(pts[i]["mi_nats"]) for i in order]
        lo = [max(0.0, m - float(pts[i]["ci95_lo_nats"])) for m, i in zip(mi, order)]
        hi = [max(0.0, float(pts[i]["ci95_hi_nats"]) - m) for m, i in zip(mi, order)]
        ax.errorbar(xs, mi, yerr=[lo, hi], marker="o", capsize=3, label=None if g is None else g if group_key.startswith("_") else f"{group_key}={g}")
    if not numeric:
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(values, rotation=30 if max((len(v) for v in values), default=0) > 6 else 0)
    failed = [str(r[x_key]) for r in rows if not _ok(r)]
    if failed:
        ax.text(0.01, 0.02, "failed: " + ", ".join(failed), transform=ax.transAxes, fontsize=7, color="#d62728")
    ax.set_xlabel(x_key)
    per = {r.get("per") for r in ok}
    ax.set_ylabel(f"MI (nats/{per.pop()}), 95% interval" if len(per) == 1 and None not in per
                  else "MI (nats), 95% interval")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if group_key and ok:
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_bars(path: Path, labels: Sequence[str], mi: Sequence[float], lo: Sequence[float], hi: Sequence[float],
              ylabel: str = "MI (nats), 95% interval", title: str = "") -> None:
    """One bar per run with its interval."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 2), 3.8), dpi=100)
    xs = list(range(len(labels)))
    err = [[max(0.0, m - a) for m, a in zip(mi, lo)], [max(0.0, b - m) for m, b in zip(mi, hi)]]
    ax.bar(xs, mi, yerr=err, capsize=4, color="#1f77b4", alpha=0.85)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=30 if max((len(s) for s in labels), default=0) > 8 else 0, ha="right",
                       fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_depth(path: Path, ks: Sequence[int], mi: Sequence[float], lo: Sequence[float], hi: Sequence[float],
               increments: Sequence[float], title: str = "") -> None:
    """MI of the first k codebooks (line with intervals) and each codebook's increment (bars)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    ax.bar(ks, increments, color="#ff7f0e", alpha=0.6, label="increment of codebook k (chain rule)")
    err = [[max(0.0, m - a) for m, a in zip(mi, lo)], [max(0.0, b - m) for m, b in zip(mi, hi)]]
    ax.errorbar(ks, mi, yerr=err, marker="o", capsize=3, color="#1f77b4", label="MI of the first k codebooks")
    ax.set_xticks(list(ks))
    ax.set_xlabel("codebooks k")
    ax.set_ylabel("nats")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)

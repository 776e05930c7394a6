"""``minecli depth``: the MI of the first k codebooks of one side for every k, and what each adds.

By the chain rule, I(C1..Ck; Y) = sum over j <= k of I(Cj; Y | C1..Cj-1), so the increment of codebook
k is I_k - I_(k-1). Each I_k is its own run (a point of a sweep over ``<side>.params.n_codebooks``,
cut from one cached extraction). The increment's interval is conservative: from the lower end of
I_k minus the upper end of I_(k-1) to the upper end of I_k minus the lower end of I_(k-1), since the
two intervals come from different critics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .plots import plot_depth
from .sweep import Axis, SweepResult, run_sweep
from .tables import write_table

COLUMNS = ("k", "status", "mi_nats", "ci95_lo_nats", "ci95_hi_nats", "increment_nats", "increment_lo_nats",
           "increment_hi_nats", "mi_bits", "increment_bits", "mi_bits_per_second", "run", "reason")


@dataclass
class DepthResult:
    """The depth table, the sweep behind it and the files written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    sweep: SweepResult

    def summary(self) -> str:
        """The table as Markdown and where the files are."""
        from .tables import to_markdown

        cols = ["k", "status", "mi_nats", "ci95_lo_nats", "ci95_hi_nats", "increment_nats", "increment_lo_nats",
                "increment_hi_nats", "mi_bits_per_second"]
        return (to_markdown(self.rows, cols).rstrip() + f"\ntable {self.out_dir / 'depth.csv'} (and .md, .json), "
                f"plot {self.out_dir / 'depth.png'}; runs under {self.out_dir}")


def codebook_count(config: str, overrides: list[str], side: str) -> int:
    """Codebooks the side's stream offers: its configured count, else what its full extraction holds."""
    from .pipeline import prepare

    prep = prepare(config, overrides)
    ext, spec = prep.extractors[side], prep.specs[side]
    if spec.kind != "index":
        raise ConfigError(f"{side}: '{ext.name}' gives a float stream; codebook depth needs an index stream with "
                          "several codebooks (e.g. encodec or mimi codes)")
    if getattr(ext.params, "codebook", None) is not None:
        raise ConfigError(f"{side}.params.codebook selects one codebook; remove it to measure the first k codebooks")
    n = spec.n_codebooks if spec.n_codebooks > 1 else ext.full().spec().n_codebooks
    if n < 2:
        raise ConfigError(f"{side}: the stream has one codebook; depth needs several (set {side}.params.n_codebooks "
                          "or a higher bandwidth)")
    return n


def depth_rows(sweep_rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Chain-rule increments from the rows of a sweep over n_codebooks (in order of k)."""
    rows, prev = [], {"mi_nats": 0.0, "ci95_lo_nats": 0.0, "ci95_hi_nats": 0.0, "status": "ok"}
    for r in sorted(sweep_rows, key=lambda r: int(r[key])):
        row = {"k": int(r[key]), "run": r["run"], **{c: r.get(c) for c in ("status", "mi_nats", "ci95_lo_nats",
                                                                            "ci95_hi_nats", "mi_bits",
                                                                            "mi_bits_per_second", "reason")}}
        if r["status"] == "ok" and prev["status"] == "ok":
            row["increment_nats"] = r["mi_nats"] - prev["mi_nats"]
            row["increment_lo_nats"] = r["ci95_lo_nats"] - prev["ci95_hi_nats"]
            row["increment_hi_nats"] = r["ci95_hi_nats"] - prev["ci95_lo_nats"]
            row["increment_bits"] = row["increment_nats"] / 0.6931471805599453
        rows.append(row)
        prev = r
    return rows


def run_depth(config: str, side: str, overrides: list[str] | None = None, max_k: int | None = None,
              out_dir: str | Path | None = None, **sweep_kwargs: Any) -> DepthResult:
    """Run the first-k-codebooks sweep of one side and write the depth table and plot."""
    overrides = list(overrides or [])
    n = max_k or codebook_count(config, overrides, side)
    key = f"{side}.params.n_codebooks"
    out = Path(out_dir) if out_dir else Path("runs") / f"{Path(config).stem}-depth-{side}"
    sweep = run_sweep(config, [Axis(key, tuple(str(k) for k in range(1, n + 1)))], overrides, out, **sweep_kwargs)
    rows = depth_rows(sweep.rows, key)
    write_table(out / "depth", rows, COLUMNS, {"config": str(config), "side": side,
                                               "increment_interval": "conservative: [lo_k - hi_(k-1), hi_k - lo_(k-1)]"})
    ok = [r for r in rows if r["status"] == "ok"]
    if ok:
        plot_depth(out / "depth.png", [r["k"] for r in ok], [r["mi_nats"] for r in ok],
                   [r["ci95_lo_nats"] for r in ok], [r["ci95_hi_nats"] for r in ok],
                   [r.get("increment_nats") or 0.0 for r in ok],
                   title=f"{Path(config).stem}: first k codebooks of {side}")
    return DepthResult(out, rows, sweep)

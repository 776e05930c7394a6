"""Results on disk: results.json, a one-screen summary, and a PNG of the training curves."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import atomic_write, write_json, write_text


def summary_text(doc: dict[str, Any]) -> str:
    """The one-screen human summary of a results document."""
    lo, hi = doc["ci95_nats"]
    sx, sy = doc["streams"]["x"], doc["streams"]["y"]

    def stream(s: dict[str, Any]) -> str:
        from .spec import StreamSpec

        return f"{s['extractor']} ({StreamSpec.from_dict(s['spec']).describe()})"

    lines = [*_units_lines(doc, lo, hi),
        f"  x: {stream(sx)}",
        f"  y: {stream(sy)}",
        *_lag_lines(doc),
        f"  estimator: {doc['estimator']} ({_bound_kind(doc)}), "
        f"test frames {doc['frames']['test']}, CI by {doc['ci_method']}",
        *_half_sample_lines(doc),
    ]
    if doc.get("ci95_test_noise_nats"):
        nlo, nhi = doc["ci95_test_noise_nats"]
        names = {"in_sample_nats": "the critic's bound on its own train frames",
                 "other_estimates_nats": "the other critic's held-out bound", "baseline_nats": "the classical baseline"}
        terms = []
        for key, value in (doc.get("ci_terms") or {}).items():
            # only what lies outside the test-noise interval widened the reported one
            # (bounds of trained critics only ever raise the upper end; the baseline moves either end)
            both = key == "baseline_nats"
            outside = [x for x in (value if isinstance(value, list) else [value])
                       if key.endswith("_nats") and key != "test_noise" and (x > nhi or (both and x < nlo))]
            if outside:
                terms.append(f"{names.get(key, key)} ({', '.join(f'{x:.4f}' for x in outside)})")
        lines.append(f"  95% interval from test noise alone: [{nlo:.4f}, {nhi:.4f}] nats"
                     + (f"; widened to hold {' and '.join(terms)}, each with that noise" if terms else ""))
    if doc.get("critic"):
        lines.append(f"  critic: {doc['critic']}")
    if doc.get("p_value_no_dependence") is not None:
        p_text = doc.get("p_value_no_dependence_text") or f"{doc['p_value_no_dependence']:.3g}"
        how = (f"{doc['n_permutations']} re-pairings of {doc['permutation_unit']}" if doc.get("n_permutations")
               else "shuffled pairings")
        lines.append(f"  p-value of no dependence: {p_text} ({how})")
    for side, ent in (doc.get("entropy") or {}).items():
        k = ent.get("source_frames_per_sample", 1)
        window = (f"; ceiling of a {k}-frame window {ent['ceiling_nats']:.3f} nats ({k} x H)" if k > 1 else "")
        lines.append(f"  H({side.upper()}) plug-in on test {ent['plugin_entropy_nats']:.3f} nats/frame; "
                     f"log(vocab) {ent['log_vocab_nats']:.3f} nats{window}")
    base = doc.get("baseline")
    if base and base.get("method"):
        lines.append(f"  classical baseline ({base['method']}): {base['mi_nats']:.4f} nats"
                     + (f"; {base['note']}" if base.get("note") else ""))
    elif base and base.get("reason"):
        lines.append(f"  classical baseline: none ({base['reason']})")
    tr = doc["training"]
    dropped = doc["pairs_dropped"]
    lines.append(f"  training: {tr['steps_run']} steps, best at {tr['best_step']} (valid {tr['best_valid_mi_nats']:.4f}), "
                 f"{'stopped early' if tr['stopped_early'] else 'ran to the end'}, {tr['pairs_per_second']:.0f} pairs/s"
                 + _arithmetic(tr))
    lines.append(f"  frames train/valid/test: {doc['frames']['train']}/{doc['frames']['valid']}/{doc['frames']['test']}; "
                 f"utterances dropped by pairing: {dropped['train']}/{dropped['valid']}/{dropped['test']}")
    lines.append(f"  time: {doc['time_seconds']['total']:.1f} s (extraction {doc['time_seconds']['extraction']:.1f} s, "
                 f"training {doc['time_seconds']['training']:.1f} s)")
    for n in doc.get("notes") or []:
        lines.append(f"  note: {n}")
    for w in doc.get("warnings") or []:
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)


def _bound_kind(doc: dict[str, Any]) -> str:
    """What the number is: a lower bound, a bound extrapolated to unlimited training data, or neither."""
    if doc.get("half_sample"):
        return "a held-out bound extrapolated to unlimited training data"
    return "lower bound" if doc["lower_bound"] else "not a strict bound"


def _fold_corrections(folds: list[dict[str, Any] | None]) -> str:
    """How each cross-fitted part's estimate was corrected, counted: "3 by the posterior shortfall, 2 by ..."."""
    names = {"posterior": "by the posterior shortfall", "half-sample": "by the halves", None: "uncorrected"}
    how = [None if not f else f.get("correction") or ("half-sample" if f.get("half_sample_bounds_nats") else None)
           for f in folds]
    return ", ".join(f"{how.count(k)} {names[k]}" for k in ("posterior", "half-sample", None) if k in how)


def _half_sample_lines(doc: dict[str, Any]) -> list[str]:
    """The held-out bound beside its corrections for the train split's size, when the estimate is corrected."""
    half = doc.get("half_sample")
    if not half:
        return []
    held = f"  held-out bound before the correction: {half['held_out_bound_nats']:.4f} nats"
    if half.get("ci95_held_out_nats"):
        lo, hi = half["ci95_held_out_nats"]
        held += f", 95% test noise [{lo:.4f}, {hi:.4f}]"
    if half.get("half_sample_bounds_nats"):
        parts = ", ".join(f"{b:.4f}" for b in half["half_sample_bounds_nats"])
        held += f"; the same critic refitted on each half of the train split: {parts}"
    if half.get("posterior_shortfall_nats") is not None:
        used = ("the estimate" if half.get("correction") == "posterior" else
                "less than the halves' extrapolation, which gives the estimate")
        held += f"; the table's expected shortfall under its posterior: {half['posterior_shortfall_nats']:+.4f} nats ({used})"
    if half.get("folds"):
        held += "; folds " + _fold_corrections(half["folds"])
    return [held + " (critic.half_sample_correction: false reports the bound)"]


def _arithmetic(tr: dict[str, Any]) -> str:
    """How the training steps ran, when the results say (those written before did not)."""
    if not tr.get("precision"):
        return ""
    threads = tr.get("threads")
    where = f" on {tr['device']}" if tr.get("device") else ""
    return (f" ({tr['precision']} steps{where}" + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")
            + "; scored in float32)")


def _units_lines(doc: dict[str, Any], lo: float, hi: float) -> list[str]:
    """The estimate in nats and bits per sample and in bits per second, saying what a sample is."""
    u = doc.get("units")
    if not u:  # results written before units were recorded
        return [f"I(X;Y) = {doc['mi_nats']:.4f} nats/frame  ({doc['mi_bits']:.4f} bits)   95% CI [{lo:.4f}, {hi:.4f}] nats",
                f"       = {doc['mi_bits_per_second']:.1f} bits/s at the aligned {doc['aligned_frame_rate_hz']:g} Hz frame rate"]
    cx, cy = u["context_frames"]["x"], u["context_frames"]["y"]
    per = "frame" if (cx, cy) == (1, 1) else "window"
    rx, ry = u["repeat"]["x"], u["repeat"]["y"]
    why = []
    if (cx, cy) != (1, 1):
        why.append(f"context x {cx}, y {cy} frames")
    if rx > 1 or ry > 1:
        why.append(f"repeats x {rx:g}, y {ry:g}")
    stride = f"one per {u['stride_frames']:g} aligned frames ({'; '.join(why)})" if why else "one per aligned frame"
    return [
        f"I(X;Y) = {doc['mi_nats']:.4f} nats/{per}  ({doc['mi_bits']:.4f} bits/{per})   95% CI [{lo:.4f}, {hi:.4f}] nats",
        f"       = {doc['mi_bits_per_second']:.1f} bits/s of audio: bits per {per} x {u['samples_per_second']:g} "
        f"non-overlapping {per}s/s, {stride}, aligned at {u['aligned_frame_rate_hz']:g} Hz",
        f"  a {per}: {u['sample']}",
    ]


def _lag_lines(doc: dict[str, Any]) -> list[str]:
    """The pairing lag, when there is one."""
    align = (doc.get("pairing") or {}).get("alignment") or {}
    lag = align.get("lag_frames") or 0
    if not lag:
        return []
    return [f"  lag: x[t] paired with y[t{lag:+d}] ({align['lag_ms']:+g} ms), ends trimmed"]


def plot_curves(path: Path, history: list[dict[str, float]], final: float | None = None,
                ci: tuple[float, float] | None = None, title: str = "") -> None:
    """Train and validation MI over steps, with the final test estimate as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if history:
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["train_mi"] for h in history], label="train (batch mean)", color="#888888")
        ax.plot(steps, [h["valid_mi"] for h in history], label="validation", color="#1f77b4", marker=".")
    if final is not None:
        ax.axhline(final, color="#d62728", linestyle="--", label=f"test estimate {final:.3f}")
        if ci is not None:
            ax.axhspan(ci[0], ci[1], color="#d62728", alpha=0.12, label="test 95% CI")
    ax.set_xlabel("step")
    ax.set_ylabel("MI (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write_results(out_dir: Path, doc: dict[str, Any]) -> str:
    """Write results.json, summary.txt and curves.png; return the summary."""
    summary = summary_text(doc)
    write_json(out_dir / "results.json", doc)
    write_text(out_dir / "summary.txt", summary + "\n")
    title = f"{doc['streams']['x']['extractor']} vs {doc['streams']['y']['extractor']} ({doc['estimator']})"
    plot_curves(out_dir / "curves.png", doc.get("history") or [], doc["mi_nats"], tuple(doc["ci95_nats"]), title)
    return summary

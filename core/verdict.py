"""Whether a computed estimate can be quoted: warnings for suspicious results, an error for a non-finite one."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import MinecliError
from .io import non_finite_keys

#: A validation value this far below zero (nats per frame) is a numerical blow-up, not an estimate:
#: true MI is >= 0 and the untrained critic, the baseline every run starts from, scores about 0.
DIVERGED_NATS = -100.0

#: z = (best validation - test) / standard error of the test estimate above which the test value is
#: flagged. Validation is the best of many checks, so it sits a little above a fresh split even when
#: all is well; 3 standard errors leaves room for that selection effect.
GAP_Z = 3.0
#: ... and the gap must also be this fraction of the validation value and at least GAP_MIN_NATS, so
#: that a very precise test estimate (a tiny standard error), or noise around 0 on independent
#: streams, is not flagged for a difference nobody would quote.
GAP_FRACTION = 0.2
GAP_MIN_NATS = 0.05


def result_suspicions(mi: float, ci: tuple[float, float], ci_method: str, best_valid: float,
                      history: list[dict[str, float]]) -> list[str]:
    """Warnings for an estimate that was computed but may not mean what it seems."""
    out: list[str] = []
    lo, hi = ci
    low = [h for h in history if math.isfinite(h.get("valid_mi", 0.0)) and h["valid_mi"] < DIVERGED_NATS]
    if low:
        worst = min(low, key=lambda h: h["valid_mi"])
        out.append(f"training diverged: validation reached {worst['valid_mi']:.4g} nats at step {int(worst['step'])}; "
                   "the estimate comes from the best validated state but may be unreliable. Use "
                   "pairing.normalization: normal_score (bounded inputs), or lower training.lr")
    if not (math.isfinite(mi) and math.isfinite(best_valid)):
        return out
    bootstrapped = ci_method != "none"
    se = (hi - lo) / (2 * 1.959964) if bootstrapped and math.isfinite(hi - lo) else 0.0
    gap = best_valid - mi
    # A zero-width bootstrap interval means every test frame scored alike (constant frames): any gap
    # counts. Without a bootstrap (training.bootstrap < 10) only the size of the gap can be judged.
    if gap > max(GAP_FRACTION * abs(best_valid), GAP_MIN_NATS) and (se == 0 or gap > GAP_Z * se):
        how = (f"{gap / se:.1f} standard errors" if se > 0 else
               "every test frame scored alike" if bootstrapped else "no bootstrap interval to compare with")
        out.append(f"the test estimate {mi:.4f} nats is far below the validation value {best_valid:.4f} "
                   f"({how}): the test split differs from train and validation (long "
                   "silences or constant frames, another speaker or recording); check the test files")
    elif hi < 0:
        out.append(f"the whole test-noise 95% interval [{lo:.4f}, {hi:.4f}] is below 0: the critic does not carry over to the "
                   "test split, so this is not an estimate of I(X;Y); check the test files and the pairing")
    return out


def trainer_suspicions(trainer: Any, final: dict[str, Any]) -> list[str]:
    """``result_suspicions`` for a trainer's test estimate, against the critic that actually scored it."""
    ref = trainer.reference_report
    scored_valid = ref["valid_nats"] if ref and ref["selected"] else trainer.best_value
    # the test-noise interval: the reported one is widened by the estimator's bias terms
    noise_ci = final.get("ci95_test_noise_nats", final["ci95_nats"])
    mi, half = final["mi_nats"], final.get("half_sample")
    if half and half.get("ci95_held_out_nats"):
        # validation is a held-out bound: it is compared with the test bound before any correction
        mi, noise_ci = half["held_out_bound_nats"], half["ci95_held_out_nats"]
    out = result_suspicions(mi, noise_ci, final["ci_method"], scored_valid, trainer.history)
    note = getattr(trainer, "half_sample_note", None)
    if note:
        out.append(f"{note}: the estimate is the held-out bound, not corrected for the size of the train split")
    kept = getattr(trainer, "untrained_kept", None)
    if kept is not None and not (ref and ref["selected"]):
        out.append(f"no trained state validated significantly above the untrained critic (best {kept[1]:.3f} nats "
                   f"at step {kept[0]}), so the untrained critic (T ~ 0) scored the test split; more validation "
                   "data or training steps may show a dependence")
    return out


def flag_non_finite(doc: dict[str, Any]) -> list[str]:
    """Add a warning for values results.json will hold as null; returns their keys."""
    bad = non_finite_keys({k: v for k, v in doc.items() if k != "config"})
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        doc.setdefault("warnings", []).append(f"non-finite values (NaN or infinite) are written as null: {shown}")
    return bad


def require_finite(doc: dict[str, Any], out_dir: Path) -> None:
    """Raise unless the estimate itself is finite: such a run must not exit 0."""
    mi = doc.get("mi_nats")
    if not (isinstance(mi, float) and math.isfinite(mi)):
        raise MinecliError(f"the estimate is not finite ({mi}); {out_dir / 'results.json'} records it as null. Delete "
                           f"{out_dir / 'checkpoints'} (or set output.resume=false) and run again; if it recurs, "
                           "lower training.lr or use pairing.normalization: normal_score")


def note_inputs(doc: dict[str, Any], skipped: list[str], conversions: list[str | None], out_dir: Path) -> None:
    """Record skipped files (results.json, skipped.txt, a warning) and audio conversions (notes)."""
    from .io import write_text

    doc["skipped"] = list(skipped)
    listing = out_dir / "skipped.txt"
    if skipped:
        write_text(listing, "".join(f"{p}\n" for p in skipped))
        doc.setdefault("warnings", []).append(
            f"{len(skipped)} unreadable audio files were skipped (data.on_error: skip); they are listed in {listing}")
    elif listing.exists():
        listing.unlink()  # a list left by an earlier run in this folder would describe files this run used
    notes = [c for c in conversions if c]
    if notes:
        doc["notes"] = notes

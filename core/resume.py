"""Checkpoints of a training run: atomic saves of the best, last and reference states, and exact resume."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from .checkpoint import CheckpointError, digests, read_state, read_tensors
from .errors import MinecliError
from .io import _umask, replace_dir, write_error, write_json

if TYPE_CHECKING:
    from .trainer import Trainer


class Checkpoints:
    """Saves and restores a Trainer's state under ``folder`` (checkpoints/best, last, reference)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def clear_stale(self) -> None:
        """Remove staging folders of saves that a kill interrupted."""
        if not self.folder.is_dir():
            return
        # The run owns the folder now (the output lock), so none of them belongs to a live save.
        for stale in self.folder.glob(".*.*"):
            if stale.is_dir() and stale.name.split(".")[1] in ("last", "best", "reference"):
                shutil.rmtree(stale, ignore_errors=True)

    @contextmanager
    def staged(self, which: str) -> Iterator[Path]:
        """A temporary folder beside ``checkpoints/<which>`` that replaces it in one rename when the block ends."""
        tmp: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{which}.", dir=self.folder))
            yield tmp
            # mkdtemp and safetensors make owner-only entries; checkpoints follow the umask like results.
            mask = _umask()
            for f in tmp.iterdir():
                os.chmod(f, 0o666 & ~mask)
            os.chmod(tmp, 0o777 & ~mask)
            replace_dir(tmp, self.folder / which)
        except BaseException as exc:
            # A failed save leaves the previous checkpoint as it was and no half-written folder beside it.
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise write_error(self.folder / which, exc) from None
            raise

    def save(self, tr: Trainer, which: str, ranks: list[tuple[torch.Tensor, dict[str, Any]]] | None = None) -> None:
        """Write checkpoint ``which`` (best or last) of the trainer; `ranks`: every rank's sampler and estimator
        state under torchrun."""
        with self.staged(which) as tmp:
            self._write(tr, which, tmp, ranks)

    def save_reference(self, tr: Trainer) -> None:
        """The selected reference critic's tensors beside the checkpoints, so the estimate can be re-scored."""
        ref, report = tr.reference, tr.reference_report
        if ref is None or report is None:
            return
        with self.staged("reference") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in ref.state_dict().items()},
                      str(tmp / "model.safetensors"))
            write_json(tmp / "state.json", {**report, "config": tr.config_doc})

    def _write(self, tr: Trainer, which: str, tmp: Path,
               ranks: list[tuple[torch.Tensor, dict[str, Any]]] | None = None) -> None:
        """Weights and state of checkpoint `which` (best or last) into the staged folder `tmp`."""
        state = tr.model.state_dict() if which == "last" or tr.best_state is None else tr.best_state
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
        if which != "last":
            write_json(tmp / "state.json", {"step": tr.best_step, "valid_mi": tr.best_value, "config": tr.config_doc})
            return
        opt = tr.opt.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in opt["state"].items():
            for key, val in pstate.items():
                if torch.is_tensor(val):
                    tensors[f"opt.{pid}.{key}"] = val.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(pid), {})[key] = val
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.sampler"] = tr.gen.get_state()
        for r, (sampler, _) in enumerate(ranks or []):
            if r:  # rank 0's is rng.sampler, as in a single process
                tensors[f"rng.sampler.rank{r}"] = sampler
        if tr.best_state is not None:
            for k, v in tr.best_state.items():
                tensors[f"best.{k}"] = v.detach().cpu().contiguous()
        save_file(tensors, str(tmp / "trainer.safetensors"))
        doc = {"step": tr.step, "total_steps": tr.total_steps, "best_value": tr.best_value,
               "best_step": tr.best_step, "bad_validations": tr.bad_validations, "progress_bar": tr.progress_bar,
               "lr_scale": tr.lr_scale, "since_lr_change": tr.since_lr_change,
               "stopped_early": tr.stopped_early, "stop_reason": tr.stop_reason, "history": tr.history,
               "estimator_state": tr.estimator.state_dict(), "param_groups": opt["param_groups"],
               "opt_scalars": scalars, "train_seconds": tr.train_seconds, "config": tr.config_doc,
               "sha256": digests(tmp)}
        if ranks:
            doc["world_size"] = len(ranks)
            doc["estimator_state_ranks"] = [est for _, est in ranks[1:]]
        write_json(tmp / "state.json", doc)

    def try_resume(self, tr: Trainer, rank: int = 0) -> None:
        """Restore the trainer from checkpoints/last (or the folder an interrupted swap left), when there is one;
        `rank` picks that rank's sampler state."""
        last = self.folder / "last"
        candidates = [f for f in (last, last.with_name("last.old")) if (f / "state.json").exists()]
        if not candidates:
            return
        problems = []
        for folder in candidates:
            try:
                doc = read_state(folder)
                self._check_config(tr, folder, doc)
                model, tensors = read_tensors(folder, tr.model.state_dict(), doc)
            except CheckpointError as exc:
                # The folder before the last save (left by an interrupted swap) may still be whole.
                problems.append(str(exc))
                continue
            for problem in problems:
                print(f"minecli: warning: {problem}; using the earlier checkpoint {folder}", file=sys.stderr)
            self._restore(tr, folder, doc, model, tensors, rank)
            return
        raise MinecliError(f"{problems[0]}; no earlier checkpoint is readable. Delete {self.folder} to start "
                           "training afresh, or run with output.resume=false")

    @staticmethod
    def _check_config(tr: Trainer, last: Path, doc: dict[str, Any]) -> None:
        saved_cfg = doc.get("config") or {}
        if tr.config_doc and saved_cfg and model_part(saved_cfg) != model_part(tr.config_doc):
            raise MinecliError(f"checkpoint {last} was made with a different model or data config; use a new "
                               "output.dir, or output.resume=false to start over")

    def _restore(self, tr: Trainer, last: Path, doc: dict[str, Any], model: dict[str, torch.Tensor],
                 tensors: dict[str, torch.Tensor], rank: int = 0) -> None:
        """Continue from a checkpoint whose files read_state and read_tensors have validated."""
        tr.model.load_state_dict(model)
        opt_state: dict[int, dict[str, Any]] = {}
        for key, val in tensors.items():
            if key.startswith("opt."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = val
        for pid, sc in doc.get("opt_scalars", {}).items():
            opt_state.setdefault(int(pid), {}).update(sc)
        try:
            tr.opt.load_state_dict({"state": opt_state, "param_groups": doc["param_groups"]})
        except (ValueError, KeyError, TypeError) as exc:
            raise MinecliError(f"checkpoint {last / 'state.json'} does not fit this model ({exc}); delete "
                               f"{self.folder} to start training afresh, or run with output.resume=false") from None
        torch.set_rng_state(tensors["rng.torch"])
        sampler = tensors["rng.sampler"] if rank == 0 else tensors.get(f"rng.sampler.rank{rank}")
        if sampler is not None:
            tr.gen.set_state(sampler)
        else:
            # Saved by fewer ranks than now: this rank's frames continue from a seed of its own and the step.
            from .distributed import RANK_SEED_STRIDE

            tr.gen.manual_seed(tr.cfg.seed + 1 + RANK_SEED_STRIDE * rank + int(doc["step"]))
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        tr.best_state = best or None
        tr.step, tr.best_value = int(doc["step"]), float(doc["best_value"])
        tr.best_step, tr.bad_validations = int(doc["best_step"]), int(doc["bad_validations"])
        # a checkpoint from before early_stopping_min_delta: any rise above the best was progress
        tr.progress_bar = float(doc.get("progress_bar", tr.best_value))
        tr.lr_scale = float(doc.get("lr_scale", 1.0))
        tr.since_lr_change = int(doc.get("since_lr_change", 0))
        tr.stopped_early = bool(doc["stopped_early"])
        tr.stop_reason = doc.get("stop_reason")
        tr.history = list(doc["history"])
        others = doc.get("estimator_state_ranks") or []
        own = doc.get("estimator_state", {}) if rank == 0 or rank > len(others) else others[rank - 1]
        tr.estimator.load_state_dict(own)
        tr.train_seconds = float(doc.get("train_seconds", 0.0))
        saved_world = int(doc.get("world_size", 1))
        if rank == 0:
            print(f"minecli: resuming from {last} at step {tr.step}", file=sys.stderr)
            if saved_world != tr.world:
                print(f"minecli: note: the checkpoint was saved by {saved_world} process(es) and the run continues "
                      f"with {tr.world}; training continues, but not exactly as an uninterrupted run would",
                      file=sys.stderr)


def model_part(doc: dict[str, Any]) -> Any:
    """The parts of a config that must match for a checkpoint to be resumable."""
    keep = {k: doc.get(k) for k in ("x", "y", "pairing", "critic", "estimator")}
    tr = dict(doc.get("training") or {})
    keep["training"] = {k: tr.get(k) for k in ("batch_size", "segment_length", "seed")}
    return json.loads(json.dumps(keep, sort_keys=True, default=str))

"""Which critic form gives the highest held-out bound on real speech: the evidence behind ``critic.form: auto``.

    python benchmarks/critic_forms.py              # all pairs, appended to benchmarks/RESULTS.md
    python benchmarks/critic_forms.py --no-write   # print only

Every number is a lower bound on held-out test frames, so on the same split the higher one is the
closer to the (unknown) truth, up to the interval. The audio is the bundled demo (36 sentences of
espeak-ng speech in configs/demo/, split by utterance):
- float pairs from torchaudio transforms: log-mel (80) at t vs t + 50 ms, MFCC (13) at t vs t + 30 ms,
  and mel bands 0-39 vs 40-79 of the same frame;
- phone labels (pocketsphinx, as in the demo) vs log-mel at context 1, where auto picks the classifier.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import _bench  # the benchmarks folder is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo"

FLOAT_FORMS: list[tuple[str, dict[str, Any], list[int] | None]] = [
    ("mlp", {"form": "mlp"}, None),
    ("auto: mlp + quadratic 64", {}, None),
    ("mlp + quadratic 64, mlp_lr_scale 0.1", {"quadratic_dim": 64, "mlp_lr_scale": 0.1}, None),
    ("quadratic 64 alone", {"quadratic_dim": 64}, []),
]
TOKEN_FORMS: list[tuple[str, dict[str, Any]]] = [("mlp", {"form": "mlp"}), ("auto: classifier", {})]


def float_pairs() -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """The three float pairs, per utterance."""
    import soundfile as sf
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=80)
    mfcc = torchaudio.transforms.MFCC(16000, n_mfcc=13, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40})
    mels, mfccs = [], []
    for f in sorted(DEMO.glob("*.flac")):
        audio, sr = sf.read(f, dtype="float32")
        if sr != 16000:
            raise SystemExit(f"{f}: expected 16 kHz audio, found {sr} Hz")
        w = torch.from_numpy(audio)
        mels.append((mel(w) + 1e-5).log().T.numpy())
        mfccs.append(mfcc(w).T.numpy())
    return {
        "log-mel t vs t+50 ms": ([m[:-5] for m in mels], [m[5:] for m in mels]),
        "MFCC t vs t+30 ms": ([c[:-3] for c in mfccs], [c[3:] for c in mfccs]),
        "mel bands 0-39 vs 40-79": ([m[:, :40] for m in mels], [m[:, 40:] for m in mels]),
    }


def phone_config(work: Path, normalization: str) -> Path:
    """The demo's config at context 1 (single phone labels), its cache reused."""
    doc = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    doc["pairing"]["context_frames"] = 1
    doc["pairing"]["normalization"] = normalization
    for split in ("train", "valid", "test"):
        doc["data"][split] = str(ROOT / doc["data"][split])
    doc["data"]["cache_dir"] = str(ROOT / doc["data"]["cache_dir"])
    doc["training"].update({"progress": False})
    doc["output"] = {"dir": str(work / "run"), "resume": False}
    work.mkdir(parents=True, exist_ok=True)
    path = work / "phones-vs-mel-context1.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--normalization", default="standard", help="float-stream normalisation for every pair")
    ap.add_argument("--auto-only", action="store_true", help="only the default (auto) critic forms")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bf16"],
                    help="training.precision of every run")
    args = ap.parse_args(argv)
    float_forms = [f for f in FLOAT_FORMS if f[0].startswith("auto")] if args.auto_only else FLOAT_FORMS
    token_forms = [f for f in TOKEN_FORMS if f[0].startswith("auto")] if args.auto_only else TOKEN_FORMS
    import torch

    import minecli

    torch.set_num_threads(1)
    rows = []
    pairs = float_pairs()
    for task, (x, y) in pairs.items():
        for label, critic, hidden in float_forms:
            t0 = time.perf_counter()
            extra = {"hidden_dims": hidden, "precision": args.precision} if hidden is not None else {
                "precision": args.precision}
            r = minecli.estimate_mi(x, y, seed=args.seed, progress=False, baseline=False, critic=critic,
                                    normalization=args.normalization, **extra)
            rows.append([task, label, r.critic, f"{r.mi_nats:.3f}", f"[{r.ci95_nats[0]:.3f}, {r.ci95_nats[1]:.3f}]",
                         f"{r.best_step}/{r.steps_run}", f"{time.perf_counter() - t0:.1f}"])
            print(" | ".join(rows[-1]), file=sys.stderr)

    loaded = _bench.load(phone_config(Path("/tmp") / "minecli-critic-forms", args.normalization))
    for label, critic in token_forms:
        t0 = time.perf_counter()
        trainer = _bench.make_trainer(loaded, critic=critic, seed=args.seed, precision=args.precision)
        trainer.fit()
        est = trainer.estimate()
        rows.append(["phones vs log-mel, context 1 (demo audio)", label, trainer.describe_critic(),
                     f"{est['mi_nats']:.3f}", f"[{est['ci95_nats'][0]:.3f}, {est['ci95_nats'][1]:.3f}]",
                     f"{trainer.best_step}/{trainer.step}", f"{time.perf_counter() - t0:.1f}"])
        print(" | ".join(rows[-1]), file=sys.stderr)

    table = _bench.md_table(["pair", "critic option", "critic used", "test nats", "95% CI", "best/run steps",
                             "seconds"], rows)
    frames = {name: sum(len(a) for a in x) for name, (x, _) in pairs.items()}
    body = (f"Seed {args.seed}, normalization {args.normalization}, training precision {args.precision}, 1 torch thread, "
            f"estimate_mi defaults otherwise (float pairs: split by utterance "
            f"70/10/20; frames {frames}); phones: the demo's filelists and training settings at context 1.\n\n"
            f"{table}\n")
    _bench.publish("critic forms on real speech", "critic_forms.py", argv, body, save=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

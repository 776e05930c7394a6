"""Times the original pipeline's own training steps; vs_seed.py runs it inside the original's checkout.

    python seed_driver.py CONFIG THREADS STEPS WARMUP     (cwd: a checkout of DaiDongyang/mi_estimate)

It builds the original's data loaders and MINE model from CONFIG exactly as its train.py does and
calls its ``train_batch`` for STEPS steps, epoch after epoch. The timed window is the step itself plus
the wait for its batch, excluding the first WARMUP steps and the first batch of every epoch (the
loader's workers restart there), and never a validation or a checkpoint: the same window as
minecli's timed steps. Then it scores the valid and test splits with the original's ``evaluate``
and prints one line ``RESULT {json}``.
"""
import json
import sys
import time

import torch
import yaml

sys.path.insert(0, ".")
from dataset import create_data_loaders  # noqa: E402  (the original's modules, from the working directory)
from mine_estimator import MINE  # noqa: E402


def main() -> None:
    """Train for the given steps, time them and print the result line."""
    config_path, threads, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    with open(config_path) as f:
        cfg = yaml.safe_load(f)
    m, t = cfg["model"], cfg["training"]
    torch.manual_seed(t["seed"])
    info = create_data_loaders(config_path)
    model = MINE(x_type=m["x_type"], y_type=m["y_type"], x_dim=info["x_dim"], y_dim=info["y_dim"],
                 x_vocab_size=m.get("x_vocab_size"), x_embedding_dim=m.get("x_embedding_dim"),
                 y_vocab_size=m.get("y_vocab_size"), y_embedding_dim=m.get("y_embedding_dim"),
                 x_proj_dim=m.get("x_proj_dim"), y_proj_dim=m.get("y_proj_dim"),
                 context_frame_numbers=cfg["data"]["context_frame_numbers"], hidden_dims=m["hidden_dims"],
                 activation=m["activation"], batch_norm=m["batch_norm"], dropout=m["dropout"], lr=t["lr"],
                 device="cpu")
    done, timed, pairs, shape = 0, 0.0, 0, None
    while done < steps:
        batches = iter(info["train_loader"])
        fresh = True
        while done < steps:
            t0 = time.perf_counter()
            try:
                bx, by = next(batches)
            except StopIteration:
                break
            model.train_batch(bx, by, bias_correction_method=m["bias_correction_method"])
            dt = time.perf_counter() - t0
            shape = list(by.shape)
            done += 1
            if done > warmup and not fresh:
                timed += dt
                pairs += by.shape[0] * (by.shape[1] if by.dim() == 3 else 1)
            fresh = False
    wall = time.perf_counter()
    valid = model.evaluate(info["valid_loader"])
    test = model.evaluate(info["test_loader"])
    print("RESULT " + json.dumps({"steps": done, "timed_s": timed, "pairs": pairs, "batch_shape": shape,
                                  "valid": float(valid), "test": float(test),
                                  "eval_s": time.perf_counter() - wall}), flush=True)


if __name__ == "__main__":
    main()

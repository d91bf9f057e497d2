"""Checks that the real TensorBoard reads Loom's event files (issue 3).

Usage: check_tensorboard.py LOOM_BIN WORK_DIR
Trains the tiny model for a few steps with TensorBoard logging on, then loads the event files
with tensorboard's EventAccumulator and compares every scalar with metrics.jsonl.
Registered with CTest (label e2e) when a Python with the tensorboard package is found.
"""
import json
import os
import subprocess
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    loom, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    words = "the quick brown fox jumps over a lazy dog while seven bright stars shine".split()
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(words, 60)) for _ in range(80)]
    with open(os.path.join(work, "corpus.txt"), "w") as f:
        f.write("\n".join(docs))
    with open(os.path.join(work, "corpus.jsonl"), "w") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    run = lambda *a: subprocess.run([loom, *a], check=True, cwd=work)
    run("tokenizer", "train", "--input", "corpus.txt", "--vocab-size", "300", "--output", "tok")
    run("preprocess", "--input", "corpus.jsonl", "--output", "train.h5", "--val-output", "val.h5",
        "--val-fraction", "0.2", "--vocab", "tok/vocab.json", "--merges", "tok/merges.txt")
    cfg = os.path.join(work, "c.pbtxt")
    with open(cfg, "w") as f:
        f.write(f'''max_steps: 6 output_dir: "{work}/run"
model {{ n_layer: 1 n_head: 2 n_embd: 16 vocab_size: 300 block_size: 16 }}
data {{ train_path: "{work}/train.h5" val_path: "{work}/val.h5" seq_len: 16 }}
batch {{ micro_batch_size: 2 }} eval {{ interval: 3 steps: 2 }}
logging {{ tensorboard: true progress: OFF }}
''')
    subprocess.run([loom, "train", cfg], check=True)
    records = [json.loads(l) for l in open(os.path.join(work, "run", "metrics.jsonl"))]
    acc = EventAccumulator(os.path.join(work, "run", "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for want in ("train/loss", "train/lr", "train/grad_norm", "eval/val_loss"):
        assert want in tags, f"{want} missing from {tags}"
    losses = {e.step: e.value for e in acc.Scalars("train/loss")}
    for r in records:
        if "loss" in r:
            assert abs(losses[r["step"]] - r["loss"]) <= 1e-6 * abs(r["loss"]), (r, losses)
    assert len(losses) == 6, losses
    print(f"tensorboard read {len(tags)} scalar tags, {len(losses)} loss points: OK")


if __name__ == "__main__":
    main()

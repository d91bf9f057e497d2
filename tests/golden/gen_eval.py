"""Golden data for `loom eval` (tests/e2e/EvalCliTest.cpp): transformers' loss of the tiny GPT-2
directories in tests/golden/hf/ on fixed random token streams, over the windows `loom eval` reads.

Run with: transformers 4.45.2, torch 1.13.0, numpy 1.24.2, h5py 3.16.0 (/work/main/.venv).

Windows follow data/DataLoader.h: window w holds tokens [w*T, w*T + T + 1) for w < (n - 1) // T,
inputs its first T tokens and targets its last T; with --max-batches N only the first N * B windows
count. The loss is the mean cross entropy over every target token of those windows, computed by
GPT2LMHeadModel in eval mode (no dropout) in float64 (loss_f64, what the test compares against)
and in float32 (loss_f32, for reference). Writes tests/golden/eval.h5 with, per case:
tokens (i64), seq_len, batch, max_batches, windows, loss_f64, loss_f32.
"""
import os

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from golden_util import HERE, save

# name: (model directory, vocab, number of tokens, seq_len, batch, max_batches, seed)
CASES = {
    # 9 windows in batches of 4, 4 and 1: the short last batch must weigh 1/9, not 1/3.
    "untied_v300": ("gpt2_untied_v300", 300, 300, 32, 4, 0, 11),
    # 14 windows, but --max-batches 2 stops after 8.
    "untied_v300_max2": ("gpt2_untied_v300", 300, 300, 20, 4, 2, 11),
    # --max-batches above the 2 batches there are: all 6 windows.
    "tied_v61": ("gpt2_tied_v61", 61, 100, 16, 3, 5, 12),
    "sharded_v301": ("gpt2_sharded_v301", 301, 200, 24, 5, 0, 13),
}


def window_loss(model, tokens, seq_len, batch, max_batches):
    n_windows = (len(tokens) - 1) // seq_len
    if max_batches > 0:
        n_windows = min(n_windows, max_batches * batch)
    w = torch.stack([tokens[i * seq_len:i * seq_len + seq_len + 1] for i in range(n_windows)])
    with torch.no_grad():
        logits = model(w[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
    return n_windows, loss.item()


def main():
    d = {}
    for name, (model_dir, vocab, n, seq_len, batch, max_batches, seed) in CASES.items():
        gen = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, vocab, (n,), generator=gen, dtype=torch.int64)
        model = GPT2LMHeadModel.from_pretrained(os.path.join(HERE, "hf", model_dir)).eval()
        windows, loss_f32 = window_loss(model, tokens, seq_len, batch, max_batches)
        _, loss_f64 = window_loss(model.double(), tokens, seq_len, batch, max_batches)
        d.update({f"{name}/tokens": tokens, f"{name}/seq_len": torch.tensor(seq_len),
                  f"{name}/batch": torch.tensor(batch),
                  f"{name}/max_batches": torch.tensor(max_batches),
                  f"{name}/windows": torch.tensor(windows),
                  f"{name}/loss_f64": torch.tensor(loss_f64, dtype=torch.float64),
                  f"{name}/loss_f32": torch.tensor(loss_f32, dtype=torch.float64)})
        print(f"{name}: {windows} windows, loss f64 {loss_f64:.10f}, f32 {loss_f32:.10f}")
    save("eval.h5", d)


if __name__ == "__main__":
    main()

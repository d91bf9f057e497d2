#!/usr/bin/env python3
"""PyTorch twin of `loom bench` (train/Bench.cpp): the same GPT-2 training step, timed the same way.

GPT-2 (pre-LN, GELU tanh, tied LM head, fp32, no dropout), AdamW (lr 6e-4, betas (0.9, 0.95),
weight decay 0.1 on matrices other than embeddings), clip_grad_norm 1.0, zero_grad(set_to_none).
Each step ends with loss.item(). Prints one JSON line with the fields Loom prints.

  OMP_WAIT_POLICY=passive python bench/pytorch_train_gpt2.py --threads 2 --batch 4 --seq 64
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # name: (n_layer, n_head, n_embd, vocab, block)
    "tiny": (4, 4, 64, 256, 32),
    "gpt2-124m": (12, 12, 768, 50257, 1024),
    "gpt2-350m": (24, 16, 1024, 50257, 1024),
}


class Block(nn.Module):
    def __init__(self, n_head, c):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.attn_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = causal_attention(heads(q), heads(k), heads(v))
        x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


def causal_attention(q, k, v):
    """torch >= 2.0: fused SDPA. torch 1.13 (Debian's) has none: nanoGPT's explicit fallback."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~mask, float("-inf"))
    return F.softmax(att, dim=-1) @ v


class GPT(nn.Module):
    def __init__(self, n_layer, n_head, c, vocab, block):
        super().__init__()
        self.wte = nn.Embedding(vocab, c)
        self.wpe = nn.Embedding(block, c)
        self.blocks = nn.ModuleList(Block(n_head, c) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(c)
        std, rstd = 0.02, 0.02 / math.sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, rstd)
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids, targets):
        T = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_optimizer(model, impl):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("w")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.startswith("w"))]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    kw = {"lr": 6e-4, "betas": (0.9, 0.95)}
    if impl == "fused":
        kw["fused"] = True
    elif impl == "foreach":
        kw["foreach"] = True
    else:
        kw["foreach"] = False
    return torch.optim.AdamW(groups, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2-124m", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adamw", default="fused", choices=["fused", "foreach", "forloop"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    n_layer, n_head, c, vocab, block = PRESETS[a.model]
    model = GPT(n_layer, n_head, c, vocab, block)
    model.train()
    opt = make_optimizer(model, a.adamw)
    step_fn = torch.compile(model) if a.compile else model
    g = torch.Generator().manual_seed(1337)
    batches = []
    for _ in range(a.warmup + a.steps):
        seq = torch.randint(0, vocab, (a.batch, a.seq + 1), generator=g)
        batches.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))

    ms, loss_value = [], 0.0
    for s, (ids, tgt) in enumerate(batches):
        t0 = time.perf_counter()
        loss = step_fn(ids, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_value = loss.item()
        t1 = time.perf_counter()
        if s >= a.warmup:
            ms.append((t1 - t0) * 1e3)

    med = statistics.median(ms)
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "model": a.model,
        "params": sum(p.numel() for p in model.parameters()), "batch": a.batch, "seq": a.seq,
        "threads": torch.get_num_threads(), "device": "cpu", "steps": a.steps,
        "warmup": a.warmup, "adamw": a.adamw, "compile": a.compile,
        "ms_per_step_median": med, "ms_per_step_min": min(ms), "ms_per_step_max": max(ms),
        "tokens_per_s": a.batch * a.seq / (med / 1e3), "final_loss": loss_value,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }, sort_keys=True))


if __name__ == "__main__":
    main()

"""Golden data for Loom's GPT (models/GPT.h) and its AdamW training step (optim/).

Builds, in PyTorch, a tiny GPT with exactly Loom's architecture and parameter names (pre-LN
blocks, one qkv Linear C->3C, causal SDPA, tanh GELU, LM head tied to wte, dropout 0), fills it
with seeded random weights (every tensor random, biases and LayerNorm included, so every term
matters), and writes:
  gpt.h5      f32: params/<name>, ids, targets (two positions = -100), loss, grads/<name>,
              then 10 AdamW steps: train/lr, train/loss, train/grad_norm (per step), after/<name>
  gpt_f64.h5  the same run in f64 from the same (f32-valued) params: loss, grads, train/*, after
Training recipe (matches optim::LrSchedule + AdamW + clip_grad_norm): the same batch every step;
lr(step) = linear warmup over 3 steps to 1e-2, cosine to 1e-3 at step 10; betas (0.9, 0.95),
eps 1e-8; weight decay 0.1 on the Linear weights only: no decay on biases, LayerNorm and
embeddings, and the tied wte/LM-head weight counts as an embedding (no decay); clip at 1.0.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from golden_util import save

N_LAYER, N_EMBD, N_HEAD, VOCAB, BLOCK = 2, 32, 4, 64, 16
B, T = 2, 16
PEAK_LR, MIN_LR, WARMUP, TOTAL = 1e-2, 1e-3, 3, 10
STEPS = 10


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.proj = nn.Linear(N_EMBD, N_EMBD)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.proj = nn.Linear(4 * N_EMBD, N_EMBD)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD)
        self.attn = Attn()
        self.ln_2 = nn.LayerNorm(N_EMBD)
        self.mlp = MLP()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, N_EMBD)
        self.wpe = nn.Embedding(BLOCK, N_EMBD)
        self.blocks = nn.ModuleList([Block() for _ in range(N_LAYER)])
        self.ln_f = nn.LayerNorm(N_EMBD)

    def forward(self, ids, targets):
        pos = torch.arange(ids.shape[1])
        x = self.wte(ids) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1), ignore_index=-100)


def fill_weights(model, gen):
    resid_std = 0.02 / math.sqrt(2 * N_LAYER)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
                p.copy_(1.0 + 0.1 * z)
            elif name.endswith(".bias"):
                p.copy_(0.02 * z)
            elif name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                p.copy_(resid_std * z)
            else:
                p.copy_(0.02 * z)


def lr_at(step):
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    if step >= TOTAL:
        return MIN_LR
    r = (step - WARMUP) / (TOTAL - WARMUP)
    return MIN_LR + (PEAK_LR - MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * r))


def decays(name, p):
    return p.dim() >= 2 and not name.startswith(("wte.", "wpe."))


def run(model, ids, targets, prefix):
    out = {}
    loss = model(ids, targets)
    loss.backward()
    out[prefix + "loss"] = loss.detach()
    for name, p in model.named_parameters():
        out[prefix + "grads/" + name] = p.grad.clone()
    model.zero_grad(set_to_none=True)

    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": 0.1},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=PEAK_LR, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    lrs, losses, norms = [], [], []
    for step in range(STEPS):
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = model(ids, targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lrs.append(lr)
        losses.append(loss.item())
        norms.append(norm.item())
    out[prefix + "train/lr"] = torch.tensor(lrs, dtype=torch.float64)
    out[prefix + "train/loss"] = torch.tensor(losses, dtype=torch.float64)
    out[prefix + "train/grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    for name, p in model.named_parameters():
        out[prefix + "after/" + name] = p.detach().clone()
    return out


def main():
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(20240611)
    model = GPT()
    fill_weights(model, gen)
    ids = torch.randint(0, VOCAB, (B, T), generator=gen)
    targets = torch.randint(0, VOCAB, (B, T), generator=gen)
    targets[0, 3] = -100
    targets[1, 10] = -100
    init = {name: p.detach().clone() for name, p in model.named_parameters()}

    f32 = {"ids": ids, "targets": targets}
    f32.update({"params/" + n: t for n, t in init.items()})
    f32.update(run(model, ids, targets, ""))
    save("gpt.h5", f32)

    model64 = GPT().double()
    with torch.no_grad():
        for name, p in model64.named_parameters():
            p.copy_(init[name].double())
    save("gpt_f64.h5", run(model64, ids, targets, ""))


if __name__ == "__main__":
    main()

"""Golden data for the critic-free RL algorithms (tests/rlhf/RlAlgosGoldenTest.cpp).

Run with torch 1.13.0 (Debian), numpy 2.4.6, h5py 3.16.0 (/work/main/.venv/bin/python).
PyTorch formulations written from the papers and the way TRL / verl state them, independently of
the C++ code: GRPO / Dr. GRPO group advantages (torch.std, unbiased), RLOO leave-one-out
baselines, REINFORCE++ returns and whitening, DAPO dynamic-sampling flags and overlong shaping,
the clipped policy-gradient loss under the three aggregations (verl's agg_loss), the k1/k2/k3 KL
loss terms, and the IPO / cDPO / SimPO preference losses. Gradients are of the scalar losses.
Everything in float64 with a fixed seed; every array dataset is gzip-compressed.
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
G, N_PER = 4, 3          # prompts, samples per prompt
B, T = G * N_PER, 6      # sequences, tokens
CLIP_LOW, CLIP_HIGH, NORM = 0.2, 0.28, 8.0


def save(filename, tensors):
    path = os.path.join(HERE, filename)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w", libver=("v110", "v110")) as f:  # compact chunk indexes
        for name, value in sorted(tensors.items()):
            if isinstance(value, torch.Tensor):
                # Via Python lists: the venv's NumPy 2 cannot use torch 1.13's NumPy bridge.
                # Exact: float64 values go through Python floats (doubles) unchanged.
                dtype = np.int64 if value.dtype == torch.int64 else np.float64
                value = np.array(value.detach().cpu().tolist(), dtype=dtype)
            opts = {"compression": "gzip", "compression_opts": 9} if value.ndim > 0 else {}
            f.create_dataset(name, data=value, **opts)
    os.replace(tmp, path)
    print(f"wrote {path} ({len(tensors)} datasets)")


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def agg_loss(loss_mat, mask, mode):
    if mode == "token_mean":
        return masked_mean(loss_mat, mask)
    if mode == "seq_mean_token_mean":
        return ((loss_mat * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    return ((loss_mat * mask).sum(-1) / NORM).mean()  # seq_mean_token_sum_norm


def advantages(d, gen, mask):
    scores = torch.randint(0, 2, (B,), generator=gen).double() + 0.1 * randn(gen, B)
    scores[3:6] = 1.0  # group 1: every sample scored the same (no signal)
    grouped = scores.view(G, N_PER)
    mean, std = grouped.mean(1, keepdim=True), grouped.std(1, keepdim=True)
    d["scores"] = scores
    d["grpo/adv"] = ((grouped - mean) / (std + 1e-6)).view(-1)
    d["drgrpo/adv"] = (grouped - mean).view(-1)
    d["rloo/adv"] = (grouped - (grouped.sum(1, keepdim=True) - grouped) / (N_PER - 1)).view(-1)
    d["dynamic/keep"] = (grouped.max(1).values != grouped.min(1).values).long()
    d["grpo/token_adv"] = d["grpo/adv"].unsqueeze(1) * mask


def reinforce_pp(d, gen, mask, logp, ref):
    score, kl_coef = randn(gen, B), 0.05
    rewards = -kl_coef * (logp - ref) * mask
    for b in range(B):
        idx = mask[b].nonzero()
        if len(idx):
            rewards[b, idx[-1]] += score[b]
    d["rpp/score"], d["rpp/kl_coef"] = score, torch.tensor(kl_coef, dtype=torch.float64)
    d["rpp/rewards"] = rewards
    for gamma in (1.0, 0.9):
        ret, running = torch.zeros(B, T, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
        for t in reversed(range(T)):
            running = torch.where(mask[:, t] > 0, rewards[:, t] + gamma * running, running)
            ret[:, t] = running * mask[:, t]
        mean = masked_mean(ret, mask)
        var = masked_mean((ret - mean) ** 2, mask) * mask.sum() / (mask.sum() - 1)
        key = f"rpp/gamma{int(gamma * 10)}"
        d[key + "/returns"] = ret
        d[key + "/adv"] = (ret - mean) * torch.rsqrt(var + 1e-8) * mask


def policy_losses(d, gen, mask, old, ref):
    logp = (old + (torch.rand(B, T, generator=gen, dtype=torch.float64) - 0.5)).requires_grad_()
    adv = randn(gen, B, T)
    d["pg/logp"], d["pg/old_logp"], d["pg/adv"], d["ref_logp"] = logp, old, adv, ref
    ratio = torch.exp(logp - old)
    pg1, pg2 = -adv * ratio, -adv * torch.clamp(ratio, 1 - CLIP_LOW, 1 + CLIP_HIGH)
    active = (pg2 > pg1).double()
    d["pg/clipfrac"] = masked_mean(active, mask)
    d["pg/clipfrac_low"] = masked_mean(active * (ratio < 1).double(), mask)
    d["pg/clipfrac_high"] = masked_mean(active * (ratio > 1).double(), mask)
    for mode in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"):
        loss = agg_loss(torch.max(pg1, pg2), mask, mode)
        d[f"pg/{mode}/loss"] = loss
        d[f"pg/{mode}/dlogp"] = torch.autograd.grad(loss, logp, retain_graph=True)[0]
    log_r = ref - logp  # log(pi_ref / pi)
    kls = {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": torch.exp(log_r) - log_r - 1}
    for name, k in kls.items():
        d[f"kl/{name}/estimate"] = k * mask
        for mode in ("token_mean", "seq_mean_token_mean"):
            loss = agg_loss(k, mask, mode)
            d[f"kl/{name}/{mode}/loss"] = loss
            d[f"kl/{name}/{mode}/dlogp"] = torch.autograd.grad(loss, logp, retain_graph=True)[0]


def preference_losses(d, gen):
    n, beta = 6, 0.1
    pc, pr = (randn(gen, n) * 5 - 20).requires_grad_(), (randn(gen, n) * 5 - 20).requires_grad_()
    refc, refr = randn(gen, n) * 5 - 20, randn(gen, n) * 5 - 20
    d.update({"pref/policy_chosen": pc, "pref/policy_rejected": pr, "pref/ref_chosen": refc,
              "pref/ref_rejected": refr, "pref/beta": torch.tensor(beta, dtype=torch.float64)})
    h = (pc - refc) - (pr - refr)
    losses = {"ipo": ((h - 1 / (2 * beta)) ** 2).mean()}
    eps = 0.1
    d["cdpo/label_smoothing"] = torch.tensor(eps, dtype=torch.float64)
    losses["cdpo"] = (-(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)).mean()
    lc = torch.randint(1, 40, (n,), generator=gen).double()
    lr = torch.randint(1, 40, (n,), generator=gen).double()
    s_beta, s_gamma = 2.0, 1.0
    d.update({"simpo/chosen_len": lc, "simpo/rejected_len": lr,
              "simpo/beta": torch.tensor(s_beta, dtype=torch.float64),
              "simpo/gamma": torch.tensor(s_gamma, dtype=torch.float64)})
    rc, rr = s_beta * pc / lc, s_beta * pr / lr
    losses["simpo"] = -F.logsigmoid(rc - rr - s_gamma).mean()
    d["simpo/chosen_rewards"], d["simpo/rejected_rewards"] = rc, rr
    for name, loss in losses.items():
        g = torch.autograd.grad(loss, [pc, pr])
        d.update({f"{name}/loss": loss, f"{name}/dchosen": g[0], f"{name}/drejected": g[1]})


def main():
    gen = torch.Generator().manual_seed(20250314)
    d = {}
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[:, 0] = 0                  # a prompt token
    mask[1, 4:] = 0                 # shorter responses (padding)
    mask[7, 2:] = 0
    mask[10, :] = 0                 # an empty response
    d["mask"] = mask
    old, ref = randn(gen, B, T) - 1.0, randn(gen, B, T) - 1.0
    advantages(d, gen, mask)
    reinforce_pp(d, gen, mask, old, ref)
    policy_losses(d, gen, mask, old, ref)
    preference_losses(d, gen)
    lengths = torch.tensor([0, 10, 14, 15, 16, 18, 20, 21, 40])
    max_len, cache = 20, 5
    d["overlong/lengths"] = lengths
    d["overlong/penalty"] = torch.where(
        lengths <= max_len - cache, torch.zeros(len(lengths), dtype=torch.float64),
        torch.where(lengths <= max_len, ((max_len - cache) - lengths).double() / cache,
                    -torch.ones(len(lengths), dtype=torch.float64)))
    save("rl_algos.h5", d)


if __name__ == "__main__":
    main()

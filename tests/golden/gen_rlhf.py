"""Golden data for the RLHF losses (tests/rlhf/RlhfGoldenTest.cpp).

PyTorch's own formulas, written independently of the C++ code the way TRL states them: token
log-probs via log_softmax + gather, entropy via torch.distributions.Categorical, the pairwise
reward loss and the DPO loss via F.logsigmoid, the PPO clipped surrogate and clipped value losses,
and masked whitening with the unbiased variance. Gradients are of sum(out * dy) (or of the scalar
loss). Everything in float64; fixed seed.
"""
import torch
import torch.nn.functional as F

from golden_util import randn, save

IGNORE = -100


def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def main():
    gen = torch.Generator().manual_seed(20240607)
    d = {}
    B, T, V = 3, 5, 7
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 0]], dtype=torch.float64)
    d["mask"] = mask

    logits = (randn(gen, B, T, V) * 2).requires_grad_()
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[mask == 0] = IGNORE
    dy = randn(gen, B, T)
    lp = torch.gather(F.log_softmax(logits, -1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    lp = lp * (labels != IGNORE)
    d.update({"logprobs/logits": logits, "logprobs/labels": labels, "logprobs/dy": dy,
              "logprobs/out": lp, "logprobs/dlogits": torch.autograd.grad((lp * dy).sum(), logits)[0]})
    ent = torch.distributions.Categorical(logits=logits).entropy()
    d["entropy/out"] = ent
    d["entropy/dlogits"] = torch.autograd.grad((ent * dy).sum(), logits)[0]

    old = randn(gen, B, T)
    logp = (old + (torch.rand(B, T, generator=gen, dtype=torch.float64) - 0.5)).requires_grad_()
    adv = randn(gen, B, T)
    ratio = torch.exp(logp - old)
    pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2))
    loss = masked_mean(pg, mask)
    d.update({"ppo/old_logp": old, "ppo/logp": logp, "ppo/adv": adv, "ppo/loss": loss,
              "ppo/dlogp": torch.autograd.grad(loss, logp)[0],
              "ppo/clipfrac": masked_mean(((-adv * torch.clamp(ratio, 0.8, 1.2)) > -adv * ratio)
                                          .double(), mask)})

    old_v = randn(gen, B, T)
    ret = randn(gen, B, T)
    v = (old_v + (torch.rand(B, T, generator=gen, dtype=torch.float64) - 0.5)).requires_grad_()
    v_clip = old_v + torch.clamp(v - old_v, -0.2, 0.2)
    vloss = 0.5 * masked_mean(torch.max((v - ret) ** 2, (v_clip - ret) ** 2), mask)
    d.update({"value/old": old_v, "value/returns": ret, "value/v": v, "value/loss": vloss,
              "value/dv": torch.autograd.grad(vloss, v)[0]})

    x = randn(gen, B, T) * 3 + 1
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask) * mask.sum() / (mask.sum() - 1)
    d.update({"whiten/x": x, "whiten/out": (x - mean) * torch.rsqrt(var + 1e-8) * mask})

    rc, rr = randn(gen, 6).requires_grad_(), randn(gen, 6).requires_grad_()
    rloss = -F.logsigmoid(rc - rr).mean()
    g = torch.autograd.grad(rloss, [rc, rr])
    d.update({"reward/chosen": rc, "reward/rejected": rr, "reward/loss": rloss,
              "reward/dchosen": g[0], "reward/drejected": g[1]})

    pc, pr = (randn(gen, 6) * 5 - 20).requires_grad_(), (randn(gen, 6) * 5 - 20).requires_grad_()
    refc, refr = randn(gen, 6) * 5 - 20, randn(gen, 6) * 5 - 20
    beta = 0.1
    dloss = -F.logsigmoid(beta * ((pc - refc) - (pr - refr))).mean()
    g = torch.autograd.grad(dloss, [pc, pr])
    d.update({"dpo/policy_chosen": pc, "dpo/policy_rejected": pr, "dpo/ref_chosen": refc,
              "dpo/ref_rejected": refr, "dpo/beta": torch.tensor(beta, dtype=torch.float64),
              "dpo/loss": dloss, "dpo/dchosen": g[0], "dpo/drejected": g[1]})
    save("rlhf.h5", d)


if __name__ == "__main__":
    main()

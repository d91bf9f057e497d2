"""Golden data for tests/core/LinearTest.cpp and AttentionTest.cpp: F.linear, torch.matmul (with
batch broadcasting and a transposed operand) and F.scaled_dot_product_attention (causal and not),
forward and backward (given an upstream gradient dy / dout).

Inputs are drawn in float64 and rounded to float32 once, so the f32 and f64 cases share values.
The expected f32 outputs are computed by PyTorch in float64 from those f32-representable inputs
and rounded once, so the f32 tests measure only Loom's own f32 error (not PyTorch's as well).
"""
import torch
import torch.nn.functional as F

from golden_util import randn, save


def rounded(gen, *shape):
    return randn(gen, *shape).float().double()


def linear_case(gen, out, dt):
    x, w, b = rounded(gen, 2, 5, 8), rounded(gen, 6, 8) / 8 ** 0.5, rounded(gen, 6)
    dy = rounded(gen, 2, 5, 6)
    for t in (x, w, b):
        t.requires_grad_(True)
    y = F.linear(x, w, b)
    y.backward(dy)
    for name, t in dict(x=x, w=w, b=b, dy=dy, y=y, dx=x.grad, dw=w.grad, db=b.grad).items():
        out[f"linear_{dt}/{name}"] = t.to(torch.float32 if dt == "f32" else torch.float64)


def matmul_case(gen, out, dt):
    # y = a @ b^T with a (2,1,4,5) and b (3,6,5): batch broadcast both ways, b passed transposed.
    a, b = rounded(gen, 2, 1, 4, 5), rounded(gen, 3, 6, 5)
    dy = rounded(gen, 2, 3, 4, 6)
    a.requires_grad_(True)
    b.requires_grad_(True)
    y = torch.matmul(a, b.transpose(-1, -2))
    y.backward(dy)
    for name, t in dict(a=a, b=b, dy=dy, y=y, da=a.grad, db=b.grad).items():
        out[f"matmul_{dt}/{name}"] = t.to(torch.float32 if dt == "f32" else torch.float64)


def attention_case(gen, out, name, shape, causal, dtypes):
    q, k, v = (rounded(gen, *shape) for _ in range(3))
    dout = rounded(gen, *shape)
    for t in (q, k, v):
        t.requires_grad_(True)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    o.backward(dout)
    for dt in dtypes:
        tt = torch.float32 if dt == "f32" else torch.float64
        vals = dict(q=q, k=k, v=v, dout=dout, out=o, dq=q.grad, dk=k.grad, dv=v.grad)
        for key, t in vals.items():
            out[f"{name}_{dt}/{key}"] = t.to(tt)


def main():
    gen = torch.Generator().manual_seed(1234)
    out = {}
    for dt in ("f32", "f64"):
        g = torch.Generator().manual_seed(7)
        linear_case(g, out, dt)
        matmul_case(g, out, dt)
    attention_case(gen, out, "attn_causal", (2, 3, 70, 8), True, ("f32", "f64"))
    attention_case(gen, out, "attn_full", (1, 2, 17, 16), False, ("f32", "f64"))
    attention_case(gen, out, "attn_causal_big", (1, 2, 130, 32), True, ("f32",))
    save("linear_attention.h5", out)


if __name__ == "__main__":
    main()

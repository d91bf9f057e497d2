"""Golden data for elementwise and reduction ops (tests/core/ElementwiseTest.cpp, ReductionTest.cpp).

For every op: fixed f64 inputs (kept away from kinks: relu/abs at 0, clamp bounds, max ties),
y = op(inputs) and, for a fixed random weight w, the gradients of sum(y * w) w.r.t. every input.
All values are computed in float64 by PyTorch; the C++ tests run the op in f32 and in f64 and
compare against these. Binary ops broadcast b (5,) against a (4, 5).
"""
import torch

from golden_util import randn, save

gen = torch.Generator().manual_seed(1234)
SHAPE = (4, 5)


def away_from_zero(*shape):
    x = randn(gen, *shape)
    return torch.where(x >= 0, x + 0.1, x - 0.1)


def positive(*shape):
    return torch.rand(*shape, generator=gen, dtype=torch.float64) * 2.0 + 0.2


UNARY = {
    "neg": (lambda x: -x, away_from_zero),
    "exp": (torch.exp, away_from_zero),
    "log": (torch.log, positive),
    "tanh": (torch.tanh, away_from_zero),
    "sqrt": (torch.sqrt, positive),
    "rsqrt": (torch.rsqrt, positive),
    "relu": (torch.relu, away_from_zero),
    "gelu": (lambda x: torch.nn.functional.gelu(x, approximate="tanh"), away_from_zero),
    "sigmoid": (torch.sigmoid, away_from_zero),
    "square": (torch.square, away_from_zero),
    "abs": (torch.abs, away_from_zero),
    "clamp": (lambda x: torch.clamp(x, -0.55, 0.65), away_from_zero),
    "add_scalar": (lambda x: x + 1.5, away_from_zero),
    "mul_scalar": (lambda x: x * -2.25, away_from_zero),
    "div_scalar": (lambda x: x / 3.0, away_from_zero),
    "pow_scalar": (lambda x: x ** 2.5, positive),
    "rsub_scalar": (lambda x: 2.0 - x, away_from_zero),
    "rdiv_scalar": (lambda x: 2.0 / x, away_from_zero),
}

BINARY = {
    "add": (torch.add, away_from_zero),
    "sub": (torch.sub, away_from_zero),
    "mul": (torch.mul, away_from_zero),
    "div": (torch.div, away_from_zero),
    "pow": (torch.pow, positive),
    "maximum": (torch.maximum, away_from_zero),
    "minimum": (torch.minimum, away_from_zero),
}

REDUCE = {
    "sum_all": lambda x: x.sum(),
    "sum_d1": lambda x: x.sum(dim=1),
    "sum_d02_keep": lambda x: x.sum(dim=(0, 2), keepdim=True),
    "mean_d2": lambda x: x.mean(dim=2),
    "mean_d01_keep": lambda x: x.mean(dim=(0, 1), keepdim=True),
    "max_d1": lambda x: x.max(dim=1).values,
    "min_d2_keep": lambda x: x.min(dim=2, keepdim=True).values,
}


def grads(y, inputs):
    w = torch.randn(tuple(y.shape), generator=gen, dtype=torch.float64)
    gs = torch.autograd.grad((y * w).sum(), inputs)
    return w, gs


def main():
    out = {}
    for name, (fn, make) in UNARY.items():
        x = make(*SHAPE).requires_grad_(True)
        y = fn(x)
        w, (dx,) = grads(y, [x])
        out.update({f"{name}/x": x, f"{name}/y": y, f"{name}/w": w, f"{name}/dx": dx})
    for name, (fn, make) in BINARY.items():
        a = make(*SHAPE).requires_grad_(True)
        b = make(SHAPE[1]).requires_grad_(True)
        y = fn(a, b)
        w, (da, db) = grads(y, [a, b])
        out.update({f"{name}/a": a, f"{name}/b": b, f"{name}/y": y, f"{name}/w": w,
                    f"{name}/da": da, f"{name}/db": db})
    cond = randn(gen, *SHAPE) > 0
    a = away_from_zero(*SHAPE).requires_grad_(True)
    b = away_from_zero(SHAPE[1]).requires_grad_(True)
    y = torch.where(cond, a, b)
    w, (da, db) = grads(y, [a, b])
    out.update({"where/cond": cond.to(torch.int64), "where/a": a, "where/b": b, "where/y": y,
                "where/w": w, "where/da": da, "where/db": db})
    for name, fn in REDUCE.items():
        x = randn(gen, 3, 4, 5).requires_grad_(True)
        y = fn(x)
        w, (dx,) = grads(y, [x])
        out.update({f"{name}/x": x, f"{name}/y": y, f"{name}/w": w, f"{name}/dx": dx})
    save("elementwise.h5", out)


if __name__ == "__main__":
    main()

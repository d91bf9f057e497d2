"""Golden data for the neural-network and indexing ops (tests/core/NnTest.cpp, IndexingTest.cpp).

For each op, fixed inputs from a seeded generator, PyTorch's forward output, and the gradients of
sum(out * dy) for a fixed random upstream gradient dy. Everything is written twice, computed in
float32 under "f32/..." and in float64 under "f64/..." (inputs stored in that dtype too).
"""
import torch
import torch.nn.functional as F

from golden_util import randn, save

IGNORE = -100


def grads(out, dy, inputs):
    return torch.autograd.grad((out * dy).sum(), inputs)


def make_inputs(gen):
    """Float64 master inputs and integer tensors shared by both dtypes."""
    d = {}
    d["softmax/x"] = randn(gen, 3, 5, 4) * 3
    d["softmax/dy"] = randn(gen, 3, 5, 4)
    d["log_softmax/x"] = randn(gen, 4, 9) * 3
    d["log_softmax/dy"] = randn(gen, 4, 9)
    d["layer_norm/x"] = randn(gen, 2, 3, 10) * 2 + 1
    d["layer_norm/weight"] = randn(gen, 10)
    d["layer_norm/bias"] = randn(gen, 10)
    d["layer_norm/dy"] = randn(gen, 2, 3, 10)
    d["cross_entropy/logits"] = randn(gen, 8, 11) * 2
    t = torch.randint(0, 11, (8,), generator=gen)
    t[2] = IGNORE
    t[5] = IGNORE
    d["cross_entropy/targets"] = t
    d["cross_entropy/dy_none"] = randn(gen, 8)
    d["embedding/weight"] = randn(gen, 10, 4)
    d["embedding/ids"] = torch.tensor([[1, 3, 3, 9, 0], [3, 1, 7, 7, 7], [0, 0, 2, 9, 4]])
    d["embedding/dy"] = randn(gen, 3, 5, 4)
    d["cat/a"] = randn(gen, 2, 3)
    d["cat/b"] = randn(gen, 2, 4)
    d["cat/dy"] = randn(gen, 2, 7)
    d["stack/a"] = randn(gen, 3, 2)
    d["stack/b"] = randn(gen, 3, 2)
    d["stack/dy"] = randn(gen, 3, 2, 2)
    d["gather/x"] = randn(gen, 3, 5)
    d["gather/index"] = torch.tensor([[0, 4, 4, 1], [2, 2, 2, 0], [3, 1, 0, 3]])
    d["gather/dy"] = randn(gen, 3, 4)
    d["index_select/x"] = randn(gen, 4, 6)
    d["index_select/index"] = torch.tensor([3, 0, 3, 1, 3])
    d["index_select/dy"] = randn(gen, 4, 5)
    return d


def compute(d, dtype, p):
    out = {}

    def leaf(name):
        v = d[name].to(dtype).requires_grad_(True)
        out[p + name] = v.detach()
        return v

    def const(name):
        v = d[name].to(dtype) if d[name].is_floating_point() else d[name]
        out[p + name] = v
        return v

    x = leaf("softmax/x")
    y = F.softmax(x, dim=1)
    out[p + "softmax/y"] = y.detach()
    out[p + "softmax/dx"], = grads(y, const("softmax/dy"), [x])

    x = leaf("log_softmax/x")
    y = F.log_softmax(x, dim=-1)
    out[p + "log_softmax/y"] = y.detach()
    out[p + "log_softmax/dx"], = grads(y, const("log_softmax/dy"), [x])

    x, w, b = leaf("layer_norm/x"), leaf("layer_norm/weight"), leaf("layer_norm/bias")
    y = F.layer_norm(x, (10,), w, b, eps=1e-5)
    out[p + "layer_norm/y"] = y.detach()
    dx, dw, db = grads(y, const("layer_norm/dy"), [x, w, b])
    out.update({p + "layer_norm/dx": dx, p + "layer_norm/dweight": dw, p + "layer_norm/dbias": db})

    lg, t = leaf("cross_entropy/logits"), const("cross_entropy/targets")
    loss = F.cross_entropy(lg, t, ignore_index=IGNORE)
    out[p + "cross_entropy/loss_mean"] = loss.detach()
    out[p + "cross_entropy/dlogits_mean"], = torch.autograd.grad(loss, [lg])
    loss = F.cross_entropy(lg, t, ignore_index=IGNORE, reduction="sum")
    out[p + "cross_entropy/loss_sum"] = loss.detach()
    out[p + "cross_entropy/dlogits_sum"], = torch.autograd.grad(loss, [lg])
    loss = F.cross_entropy(lg, t, ignore_index=IGNORE, reduction="none")
    out[p + "cross_entropy/loss_none"] = loss.detach()
    out[p + "cross_entropy/dlogits_none"], = grads(loss, const("cross_entropy/dy_none"), [lg])

    w, ids = leaf("embedding/weight"), const("embedding/ids")
    y = F.embedding(ids, w)
    out[p + "embedding/y"] = y.detach()
    out[p + "embedding/dweight"], = grads(y, const("embedding/dy"), [w])

    a, b = leaf("cat/a"), leaf("cat/b")
    y = torch.cat([a, b], dim=1)
    out[p + "cat/y"] = y.detach()
    out[p + "cat/da"], out[p + "cat/db"] = grads(y, const("cat/dy"), [a, b])

    a, b = leaf("stack/a"), leaf("stack/b")
    y = torch.stack([a, b], dim=-1)
    out[p + "stack/y"] = y.detach()
    out[p + "stack/da"], out[p + "stack/db"] = grads(y, const("stack/dy"), [a, b])

    x, idx = leaf("gather/x"), const("gather/index")
    y = torch.gather(x, 1, idx)
    out[p + "gather/y"] = y.detach()
    out[p + "gather/dx"], = grads(y, const("gather/dy"), [x])

    x, idx = leaf("index_select/x"), const("index_select/index")
    y = torch.index_select(x, 1, idx)
    out[p + "index_select/y"] = y.detach()
    out[p + "index_select/dx"], = grads(y, const("index_select/dy"), [x])
    return out


def main():
    gen = torch.Generator().manual_seed(20240607)
    d = make_inputs(gen)
    data = {}
    data.update(compute(d, torch.float32, "f32/"))
    data.update(compute(d, torch.float64, "f64/"))
    save("nn.h5", data)


if __name__ == "__main__":
    main()

"""Golden data for the ops whose family files have no PyTorch comparison of their own: bmm,
masked_fill, split/chunk. Same convention as the other generators: inputs, forward output, and
the gradient of sum(y * w) for a fixed random w, in f64 and f32.
"""
import torch

from golden_util import randn, save


def main():
    g = torch.Generator().manual_seed(2024)
    out = {}
    for dt, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        a = randn(g, 3, 4, 5, dtype=dt).requires_grad_()
        b = randn(g, 3, 5, 2, dtype=dt).requires_grad_()
        y = torch.bmm(a, b)
        w = randn(g, *y.shape, dtype=dt)
        (y * w).sum().backward()
        out.update({f"bmm/{tag}/a": a, f"bmm/{tag}/b": b, f"bmm/{tag}/y": y, f"bmm/{tag}/w": w,
                    f"bmm/{tag}/da": a.grad, f"bmm/{tag}/db": b.grad})

        x = randn(g, 4, 6, dtype=dt).requires_grad_()
        mask = randn(g, 1, 6) > 0.3  # broadcast over rows
        y = x.masked_fill(mask, -2.5)
        w = randn(g, *y.shape, dtype=dt)
        (y * w).sum().backward()
        out.update({f"masked_fill/{tag}/x": x, f"masked_fill/{tag}/mask": mask.to(torch.uint8),
                    f"masked_fill/{tag}/y": y, f"masked_fill/{tag}/w": w,
                    f"masked_fill/{tag}/dx": x.grad})

        x = randn(g, 7, 3, dtype=dt).requires_grad_()
        parts = torch.split(x, 3, dim=0)  # 3, 3, 1 rows
        ws = [randn(g, *p.shape, dtype=dt) for p in parts]
        sum((p * w).sum() for p, w in zip(parts, ws)).backward()
        out[f"split/{tag}/x"] = x
        out[f"split/{tag}/dx"] = x.grad
        for i, (p, w) in enumerate(zip(parts, ws)):
            out[f"split/{tag}/y{i}"] = p
            out[f"split/{tag}/w{i}"] = w
    save("extra.h5", out)


if __name__ == "__main__":
    main()

"""Helpers shared by the golden-data generators (tests/golden/gen_*.py).

Each generator builds fixed inputs with a seeded torch.Generator, runs the PyTorch op, and writes
inputs, outputs and gradients into one HDF5 file next to this script; the C++ tests read those
committed files and need no Python. Run everything with tests/golden/gen_all.sh.
"""
import os

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def save(filename, tensors):
    """Writes {"group/name": tensor-or-array} to tests/golden/<filename>, replacing it."""
    path = os.path.join(HERE, filename)
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for name, value in sorted(tensors.items()):
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu()
                if value.dtype == torch.bfloat16 or value.dtype == torch.float16:
                    value = value.float()
                value = value.numpy()
            value = np.asarray(value)
            # Large datasets (the tokenizer corpus) are deflated to keep the repository small.
            opts = {"compression": "gzip", "compression_opts": 9} if value.nbytes > (1 << 20) else {}
            f.create_dataset(name, data=value, **opts)
    os.replace(tmp, path)
    print(f"wrote {path} ({len(tensors)} datasets)")


def randn(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

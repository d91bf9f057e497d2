"""Tiny random Hugging Face GPT-2 model directories for the HF import/export tests (HfConvertTest).

Writes tests/golden/hf/<name>/ with transformers' save_pretrained (safetensors) and
tests/golden/hf_gpt2.h5 holding, per model, fixed token ids, transformers' logits on them (f32
and f64) and the tokenizer's ids for TOKENIZER_TEXT. Models: vocab 61 tied head without a
tokenizer (61 tokens cannot hold the 256-byte alphabet); vocab 300 untied head with a
tokenizer.json; vocab 301 tied head with vocab.json + merges.txt, saved as shards with
model.safetensors.index.json. Every parameter (LayerNorm and biases too) is
random so a swapped name cannot go unnoticed.
  gen_hf_gpt2.py                      # regenerate the fixtures
  gen_hf_gpt2.py --check-export DIR   # transformers loads DIR/<name> (Loom's export) and matches
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, PreTrainedTokenizerFast

import golden_util

HF_DIR = os.path.join(golden_util.HERE, "hf")
TOKENIZER_TEXT = "the quick brown fox jumps over the lazy dog and then the dog sleeps"
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "the dog sleeps in the sun and the fox runs",
    "then the quick fox and the lazy dog play in the garden",
    "a brown dog jumps over a sleeping cat in the house",
]
MODELS = {
    "gpt2_tied_v61": dict(n_layer=2, n_embd=32, n_head=4, vocab_size=61, n_positions=16,
                          tie_word_embeddings=True, tokenizer=None, shard=None),
    "gpt2_untied_v300": dict(n_layer=3, n_embd=24, n_head=2, vocab_size=300, n_positions=32,
                             tie_word_embeddings=False, tokenizer="tokenizer_json", shard=None),
    "gpt2_sharded_v301": dict(n_layer=4, n_embd=16, n_head=4, vocab_size=301, n_positions=24,
                              tie_word_embeddings=True, tokenizer="vocab_merges", shard="20KB"),
}


def write_tokenizer(kind, vocab_size, out):
    """Byte-level BPE trained on CORPUS (256 bytes + <|endoftext|> + merges), saved either as
    tokenizer.json or as vocab.json + merges.txt; returns it loaded by transformers."""
    from tokenizers import ByteLevelBPETokenizer
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS * 4, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    if kind == "tokenizer_json":
        tok.save(os.path.join(out, "tokenizer.json"))
    else:
        tok.save_model(out)  # vocab.json + merges.txt
    return load_tokenizer(out)


def load_tokenizer(d):
    if os.path.exists(os.path.join(d, "tokenizer.json")):
        return PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
    if os.path.exists(os.path.join(d, "vocab.json")):
        return GPT2TokenizerFast(vocab=os.path.join(d, "vocab.json"),
                                 merges=os.path.join(d, "merges.txt"))
    return None


def fixed_ids(name, spec):
    gen = torch.Generator().manual_seed(1234 + len(name))
    return torch.randint(0, spec["vocab_size"], (2, spec["n_positions"]), generator=gen)


def logits_of(model, ids, dtype):
    m = model.to(dtype).eval()
    with torch.no_grad():
        out = m(ids).logits
    model.float()
    return out


def build(name, spec, golden):
    out = os.path.join(HF_DIR, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tok = write_tokenizer(spec["tokenizer"], spec["vocab_size"], out) if spec["tokenizer"] else None
    eot = tok.convert_tokens_to_ids("<|endoftext|>") if tok else spec["vocab_size"] - 1
    cfg = GPT2Config(n_layer=spec["n_layer"], n_embd=spec["n_embd"], n_head=spec["n_head"],
                     vocab_size=spec["vocab_size"], n_positions=spec["n_positions"],
                     tie_word_embeddings=spec["tie_word_embeddings"], bos_token_id=eot,
                     eos_token_id=eot)
    torch.manual_seed(7 + spec["vocab_size"])
    model = GPT2LMHeadModel(cfg)
    gen = torch.Generator().manual_seed(99 + spec["vocab_size"])
    with torch.no_grad():
        for pname, p in model.named_parameters():
            scale = 0.3 if pname.endswith("bias") or ".ln_" in pname or "ln_f" in pname else 0.2
            base = 1.0 if (".ln_" in pname or "ln_f" in pname) and pname.endswith("weight") else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=gen))
    kwargs = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    model.save_pretrained(out, **kwargs)
    ids = fixed_ids(name, spec)
    golden[f"{name}/ids"] = ids
    golden[f"{name}/logits"] = logits_of(model, ids, torch.float32)
    golden[f"{name}/logits_f64"] = logits_of(model, ids, torch.float64)
    if tok is not None:
        golden[f"{name}/tok_ids"] = torch.tensor(tok.encode(TOKENIZER_TEXT), dtype=torch.int64)


def check_export(export_root):
    """Loads Loom's exported directories with transformers; logits must match the originals."""
    import h5py
    ok = True
    with h5py.File(os.path.join(golden_util.HERE, "hf_gpt2.h5"), "r") as g:
        for name in MODELS:
            d = os.path.join(export_root, name)
            if not os.path.isdir(d):
                print(f"{name}: no exported directory {d}; skipped")
                continue
            model = GPT2LMHeadModel.from_pretrained(d).eval()
            ids = torch.from_numpy(np.array(g[f"{name}/ids"]))
            want = torch.from_numpy(np.array(g[f"{name}/logits"]))
            with torch.no_grad():
                got = model(ids).logits
            # 1e-5 relative to the largest logit: the bar for exported models.
            err = ((got - want).abs().max() / want.abs().max()).item()
            good = err <= 1e-5
            tok = load_tokenizer(d)
            if f"{name}/tok_ids" in g:
                good = good and tok is not None and tok.encode(TOKENIZER_TEXT) == list(
                    np.array(g[f"{name}/tok_ids"]))
            print(f"{name}: max rel logit error {err:.2e}; tokenizer "
                  f"{'ok' if tok is not None else 'absent'}; {'OK' if good else 'FAIL'}")
            ok = ok and good
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export", metavar="DIR")
    args = ap.parse_args()
    if args.check_export:
        sys.exit(0 if check_export(args.check_export) else 1)
    golden = {}
    for name, spec in MODELS.items():
        build(name, spec, golden)
    golden_util.save("hf_gpt2.h5", golden)


if __name__ == "__main__":
    main()

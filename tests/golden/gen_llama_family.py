"""Tiny random Llama / Qwen2 / Mistral models made with transformers, for LlamaFamilyTest.

Pinned versions (the ones this was run with): transformers 4.45.2, torch 1.13.0a0 (Debian's),
numpy 1.24.2, h5py 3.16.0; run with /work/main/.venv/bin/python (a venv with
--system-site-packages). The script refuses other transformers versions.

Writes tests/golden/llama_family.h5 holding, per model: every parameter under its Hugging Face
name (weights/<name>), fixed token ids (2, T), transformers' f32 logits on them (eager attention),
and transformers' greedy continuation (generate, do_sample=False) of each row's first P tokens.
Also writes tests/golden/hf_llama/<name>/ with save_pretrained (config.json, model.safetensors,
generation_config.json) for Hugging Face import/export tests; LlamaFamilyTest reads the
config.json. Sizes are tiny and odd (vocab 61-103, widths 32-48, MLP widths 48-84), with GQA,
MQA and full heads, Llama-3 and linear rope scaling, tied and untied heads, q/k/v biases (Qwen2).
Every parameter (norm weights and biases too) is random and O(1)-scaled, so attention is far from
uniform and a swapped name or a wrong rotation cannot go unnoticed.
  gen_llama_family.py
"""
import os
import shutil

import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

import golden_util

assert transformers.__version__ == "4.45.2", transformers.__version__

HF_DIR = os.path.join(golden_util.HERE, "hf_llama")
T = 13        # tokens per row
PROMPT = 5    # greedy generation starts from the first PROMPT tokens of each row
NEW = 8       # and adds NEW tokens

MODELS = {
    # GQA 6 heads / 2 kv heads, head size 6; llama3 scaling with theta 100 and original 64 puts
    # the three frequencies in the kept / interpolated / divided bands.
    "llama_gqa_llama3_tied": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=97, hidden_size=36, intermediate_size=70, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=100.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    # Full heads (Loom's fused attn.qkv), linear scaling, untied head, 3 layers.
    "llama_mha_linear_untied": (LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "linear", "factor": 2.5})),
    # Qwen2: q/k/v biases only; one kv head (MQA), head size 10, tied head.
    "qwen2_mqa_bias_tied": (Qwen2Config, Qwen2ForCausalLM, dict(
        vocab_size=89, hidden_size=40, intermediate_size=56, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        use_sliding_window=False)),
    # Mistral: GQA 8 / 2, head size 6, untied, no sliding window (as v0.3).
    "mistral_gqa_untied": (MistralConfig, MistralForCausalLM, dict(
        vocab_size=103, hidden_size=48, intermediate_size=84, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=1000000.0, tie_word_embeddings=False,
        sliding_window=None)),
}


def randomize(model, seed):
    """Linear weights N(0, 1/fan_in), embeddings N(0, 1), norm weights 1 + 0.3 N, biases 0.5 N."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * z)
            elif name.endswith("bias"):
                p.copy_(0.5 * z)
            elif "embed_tokens" in name:
                p.copy_(z)
            else:
                p.copy_(z / p.shape[1] ** 0.5)


def build(name, config_cls, model_cls, kwargs, golden):
    out = os.path.join(HF_DIR, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    # No eos token: generate runs to max_new_tokens, every step a plain argmax.
    cfg = config_cls(attn_implementation="eager", bos_token_id=None, eos_token_id=None, **kwargs)
    torch.manual_seed(5)
    model = model_cls(cfg).eval()
    randomize(model, 1000 + kwargs["vocab_size"])
    model.save_pretrained(out)
    for pname, p in model.named_parameters():  # a tied lm_head is listed once, as embed_tokens
        golden[f"{name}/weights/{pname}"] = p.detach().float()
    gen = torch.Generator().manual_seed(77 + kwargs["vocab_size"])
    ids = torch.randint(0, kwargs["vocab_size"], (2, T), generator=gen)
    golden[f"{name}/ids"] = ids
    with torch.no_grad():
        golden[f"{name}/logits"] = model(ids).logits.float()
        for r in range(ids.shape[0]):
            seq = model.generate(ids[r:r + 1, :PROMPT], max_new_tokens=NEW, do_sample=False,
                                 pad_token_id=0)
            golden[f"{name}/greedy/{r}"] = seq[0]


def main():
    golden = {}
    for name, (config_cls, model_cls, kwargs) in MODELS.items():
        build(name, config_cls, model_cls, kwargs, golden)
    golden_util.save("llama_family.h5", golden)


if __name__ == "__main__":
    main()

"""Checks that a LoRA run's merged export loads in transformers and continues like the LoRA model.

Usage: check_lora_transformers.py LOOM_BIN WORK_DIR
Run with transformers 4.45.2 and torch 1.13 (tests/golden/requirements.txt's venv). Makes a random
tiny LlamaForCausalLM (grouped-query attention, untied head) with transformers, fine-tunes it with
`loom train` (stage SFT, init_from "hf:", a lora block on q, kv, proj and fc), exports the
checkpoint with `loom convert --from loom ... --to hf`, and checks that transformers loads the
export, that its adapted weights moved away from the base's, and that its greedy continuation of a
prompt equals `loom generate`'s from the LoRA checkpoint (base + unmerged adapters).
Registered with CTest (label e2e) when a Python with transformers and torch is found.
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def main():
    loom, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)  # a fresh run, not a resumed one
    os.makedirs(work)
    run = lambda *a: subprocess.run([loom, *a], check=True, cwd=work, capture_output=True,
                                    text=True).stdout
    words = "the quick brown fox jumps over a lazy dog while seven bright stars shine".split()
    with open(os.path.join(work, "corpus.txt"), "w") as f:
        f.write("\n".join(" ".join(words[i:] + words[:i]) for i in range(len(words))))
    run("tokenizer", "train", "--input", "corpus.txt", "--vocab-size", "300", "--output", "tok")
    with open(os.path.join(work, "tok", "vocab.json")) as f:
        vocab = len(json.load(f))
    with open(os.path.join(work, "sft.jsonl"), "w") as f:
        for i in range(8):
            f.write(json.dumps({"prompt": " ".join(words[i:i + 3]),
                                "response": " ".join(words[i + 3:i + 6])}) + "\n")

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False))
    base.save_pretrained(os.path.join(work, "base"), safe_serialization=True)

    with open(os.path.join(work, "c.pbtxt"), "w") as f:
        f.write(f'''stage: SFT max_steps: 8 output_dir: "{work}/run" init_from: "hf:{work}/base"
data {{ seq_len: 32 tokenizer_vocab: "{work}/tok/vocab.json"
       tokenizer_merges: "{work}/tok/merges.txt" }}
sft {{ train_path: "{work}/sft.jsonl" }}
optimizer {{ lr: 0.02 }} batch {{ micro_batch_size: 2 }} eval {{ interval: 0 }}
logging {{ progress: OFF }} checkpoint {{ dir: "{work}/run/ck" }}
lora {{ rank: 4 alpha: 8 target_modules: ["q", "kv", "proj", "fc"] }}
''')
    run("train", "c.pbtxt")
    run("convert", "--from", "loom", "run/ck", "--to", "hf", "export")

    merged = AutoModelForCausalLM.from_pretrained(os.path.join(work, "export")).eval()
    base_sd, merged_sd = base.state_dict(), merged.state_dict()
    # Adapted ("proj" names attn.proj and mlp.proj; "fc" the fused gate/up) weights moved; the
    # frozen ones are the base's, bit for bit.
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight",
                 "model.layers.0.self_attn.o_proj.weight", "model.layers.1.mlp.up_proj.weight",
                 "model.layers.0.mlp.down_proj.weight"):
        moved = (merged_sd[name] - base_sd[name]).abs().max().item()
        assert moved > 0, f"{name}: the export equals the base"
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                 "model.layers.1.input_layernorm.weight"):
        assert torch.equal(merged_sd[name], base_sd[name]), f"{name}: a frozen weight changed"

    prompt = [5, 17, 42, 7, 90]
    out = run("generate", "--checkpoint", "run/ck", "--prompt-ids", ",".join(map(str, prompt)),
              "--temperature", "0", "--max-new-tokens", "12", "--print-ids", "--ignore-eos")
    ours = [int(t) for t in out.strip().replace(",", " ").split()]
    with torch.no_grad():
        theirs = merged.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == theirs, f"loom {ours} vs transformers {theirs}"
    with torch.no_grad():
        before = base.eval().generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                      eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert before != theirs, f"the base continues like the fine-tuned model: {before}"
    print(f"LoRA export: transformers continues {theirs} like the LoRA model: OK")


if __name__ == "__main__":
    main()

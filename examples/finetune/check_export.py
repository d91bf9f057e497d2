"""Checks the fine-tuning example's export in transformers (run by run.sh; transformers 4.45.2).

Loads the exported Hugging Face directory with AutoModelForCausalLM and AutoTokenizer, formats
each held-out conversation with the tokenizer's own chat template (apply_chat_template, generation
prompt added) and decodes greedily; `loom generate` on the fine-tuned Loom checkpoint must produce
the same token ids for the same prompt ids. Prints the answers and their accuracy; exits 1 on any
difference.
  LOOM=build/bin/loom python check_export.py EXPORT_DIR HELDOUT_JSONL LOOM_CHECKPOINT
"""
import json
import os
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 3


def main():
    export, heldout, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3]
    loom = os.environ.get("LOOM", "loom")
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export, torch_dtype=torch.float32).eval()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    right = mismatches = 0
    convs = [json.loads(line)["messages"] for line in open(heldout)]
    for messages in convs:
        ids = tok.apply_chat_template(messages[:-1], add_generation_prompt=True)
        with torch.no_grad():
            x = torch.tensor([ids])
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, eos_token_id=end, pad_token_id=end)
        hf_new = out[0, len(ids):].tolist()
        run = subprocess.run([loom, "generate", "--checkpoint", checkpoint, "--prompt-ids",
                              ",".join(map(str, ids)), "--temperature", "0", "--print-ids",
                              "--max-new-tokens", str(NEW_TOKENS), "--eos-id", str(end)],
                             capture_output=True, text=True, check=True)
        loom_new = [int(x) for x in run.stdout.strip().splitlines()[-1].split(",")]
        answer = tok.decode([t for t in hf_new if t != end]).strip()
        ok = answer == messages[-1]["content"]
        right += ok
        same = hf_new == loom_new
        mismatches += not same
        print(f"{messages[1]['content']:<6} transformers {hf_new} loom {loom_new} "
              f"{'same' if same else 'DIFFERENT'}  answer {answer!r} ({'right' if ok else 'wrong'})")
    print(f"held-out accuracy (transformers, greedy): {right}/{len(convs)}; "
          f"loom and transformers differ on {mismatches} of {len(convs)}")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()

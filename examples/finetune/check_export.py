"""Checks the fine-tuning example's export in transformers (run by run.sh; transformers 4.45.2).

Loads the exported Hugging Face directory with AutoModelForCausalLM and AutoTokenizer. 1. Logits:
the held-out conversations, formatted with the tokenizer's own chat template, tokenized by
`loom preprocess` and cut into the windows `loom eval` reads (data/DataLoader.h: window w holds
tokens [w*T, w*T + T + 1)): transformers' mean cross entropy over them (f64) must equal `loom eval`
on the export within 1e-5 relative (f32 against f64 rounding; EvalCliTest measures <= 1.1e-7).
2. Generation: each conversation formatted with the generation prompt and decoded greedily;
`loom generate` on the fine-tuned Loom checkpoint must produce the same token ids for the same
prompt ids. Prints the answers and their accuracy; exits 1 on any difference.
  LOOM=build/bin/loom python check_export.py EXPORT_DIR HELDOUT_JSONL LOOM_CHECKPOINT
"""
import json
import os
import subprocess
import sys

import h5py
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 3
SEQ_LEN = 32


def check_loss(loom, export, model, tok, convs):
    """transformers' loss over loom eval's windows of the chat-formatted text vs loom eval's."""
    text = "".join(tok.apply_chat_template(m, tokenize=False) for m in convs)
    with open("data/heldout_chat.txt", "w") as f:
        f.write(text)
    subprocess.run([loom, "preprocess", "--input", "data/heldout_chat.txt", "--output",
                    "data/heldout_chat.h5", "--tokenizer-json", export + "/tokenizer.json"],
                   capture_output=True, text=True, check=True)
    with h5py.File("data/heldout_chat.h5", "r") as f:
        tokens = torch.tensor(f["tokens"][:].astype("int64"))
    n = (len(tokens) - 1) // SEQ_LEN
    w = torch.stack([tokens[i * SEQ_LEN:i * SEQ_LEN + SEQ_LEN + 1] for i in range(n)])
    with torch.no_grad():
        logits = model.double()(w[:, :-1]).logits
        hf = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                               w[:, 1:].reshape(-1)).item()
    model.float()
    run = subprocess.run([loom, "eval", "hf:" + export, "--data", "data/heldout_chat.h5",
                          "--seq-len", str(SEQ_LEN)], capture_output=True, text=True, check=True)
    ours = json.loads(run.stdout.strip().splitlines()[-1])["loss"]
    same = abs(ours - hf) <= 1e-5 * abs(hf)
    print(f"loss over {n} windows of {SEQ_LEN}: transformers {hf:.9f}, loom eval {ours:.9f} "
          f"({'same' if same else 'DIFFERENT'})")
    return same


def main():
    export, heldout, checkpoint = sys.argv[1], sys.argv[2], sys.argv[3]
    loom = os.environ.get("LOOM", "loom")
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export, torch_dtype=torch.float32).eval()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    right = mismatches = 0
    convs = [json.loads(line)["messages"] for line in open(heldout)]
    loss_same = check_loss(loom, export, model, tok, convs)
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
    sys.exit(1 if mismatches or not loss_same else 0)


if __name__ == "__main__":
    main()

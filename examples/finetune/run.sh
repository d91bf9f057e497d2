#!/usr/bin/env bash
# Fine-tuning a Llama-family model from a Hugging Face directory, end to end on the CPU:
#   1. data: single-digit additions as chat conversations (data/chat.jsonl: 80 pairs; the other
#      20 in data/heldout.jsonl) and a noisy pretraining text (data/corpus.txt)
#   2. a base model: a small Qwen2-architecture model pretrained by Loom (base.pbtxt) and exported
#      as a Hugging Face directory, base-hf/ (the stand-in for a downloaded checkpoint)
#   3. SFT from hf:base-hf with the model's own chat template, loss on assistant turns only
#      (sft.pbtxt), exported to ft-hf/
#   4. the check: transformers loads ft-hf/ (from_pretrained, AutoTokenizer, apply_chat_template)
#      and its greedy answers to the held-out conversations equal `loom generate`'s token for
#      token (check_export.py; needs a Python with transformers, PYTHON=..., else skipped)
# Usage: [LORA=1] examples/finetune/run.sh [WORK_DIR]   (default out/finetune; LOOM= another
# binary). LORA=1 trains rank-8 LoRA adapters on every linear layer of the blocks instead of the
# whole model (base frozen; the export holds the merged weights).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
loom=${LOOM:-$root/build/bin/loom}
work=${1:-$root/out/finetune}
python=${PYTHON:-$root/.venv/bin/python}
start=$(date +%s)
mkdir -p "$work/data" "$work/tok"
cd "$work"
cp "$here"/tokenizer/tokenizer{,_config}.json tok/

echo "== 1/4 data"
awk -v out=data 'BEGIN {
  srand(1)
  for (a = 0; a < 10; a++) for (b = 0; b < 10; b++) {
    c = a + b
    for (k = 0; k < 20; k++) {  # the "web text": right 50%, off by one 40%, random 10%
      u = rand(); w = (u < 0.5) ? c : (u < 0.9) ? c + 1 : int(rand() * 19)
      print a "+" b "=" w > (out "/corpus.txt")
    }
    conv = "{\"messages\":[{\"role\":\"system\",\"content\":\"You add numbers.\"},"
    conv = conv "{\"role\":\"user\",\"content\":\"" a "+" b "=\"},"
    conv = conv "{\"role\":\"assistant\",\"content\":\"" c "\"}]}"
    print conv > (out "/" (((a * 7 + b * 3) % 5 == 0) ? "heldout.jsonl" : "chat.jsonl"))
  }
}'
"$loom" preprocess --input data/corpus.txt --output data/corpus.h5 --tokenizer-json tok/tokenizer.json

echo "== 2/4 base model: pretrain, export as a Hugging Face directory"
"$loom" train "$here/base.pbtxt"
"$loom" convert --from loom runs/base/checkpoints --to hf base-hf

echo "== 3/4 SFT from hf:base-hf with the chat template, export"
lora=()
if [ "${LORA:-0}" = 1 ]; then
  lora=(--set lora.rank=8 --set lora.target_modules=attn.q,attn.kv,proj,mlp.fc
        --set optimizer.lr=3e-3)
fi
"$loom" train "$here/sft.pbtxt" ${lora[@]+"${lora[@]}"}
"$loom" convert --from loom runs/sft/checkpoints --to hf ft-hf

echo "== 4/4 the export in transformers"
if "$python" -c "import transformers" 2>/dev/null; then
  LOOM="$loom" "$python" "$here/check_export.py" ft-hf data/heldout.jsonl runs/sft/checkpoints
else
  echo "skipped: no Python with transformers at $python (set PYTHON=...)"
fi
echo "done in $(( $(date +%s) - start )) s"

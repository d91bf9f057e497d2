# shellcheck shell=bash
# Safetensors / Hugging Face directory drills (sourced by scripts/drills.sh), on copies of the base
# run's HF export: model.safetensors with a header claiming [2^60, 4] and no bytes (D1), bad JSON,
# a header length beyond the file (and 0, 2^64-1), a bad dtype, offsets beyond the data, reversed
# or negative, a shape that does not match its bytes, an empty or truncated file, a missing
# tensor, a missing shard of an index, and a broken config.json. Each is read by `loom eval
# hf:DIR` and `loom convert --from hf`: exit 3 (a corrupt checkpoint) naming the file, or 2 / 3
# for config.json.

le64() {  # le64 N: N as 8 little-endian bytes
  local i s=""
  for i in 0 1 2 3 4 5 6 7; do s+=$(printf '\\%03o' $((($1 >> (8 * i)) & 255))); done
  # shellcheck disable=SC2059
  printf "$s"
}

st_file() {  # st_file FILE HEADER [LENGTH] [BODY_BYTES]: a safetensors file with this header
  local h=$2
  { le64 "${3:-${#h}}"; printf '%s' "$h"; head -c "${4:-0}" /dev/zero; } >"$1"
}

hf_copy() {
  rm -rf "$W/o/$1"
  cp -r "$W/hf" "$W/o/$1"
  echo "$W/o/$1"
}

hf_pair() {  # hf_pair ID EXP NAME DIR: loom eval hf:DIR and loom convert --from hf DIR
  d "$1-eval" safetensors "$2" "$3" "$LOOM" eval "hf:$4" --data "$W/data/train.val.h5"
  d "$1-convert" safetensors "$2" "$3" "$LOOM" convert --from hf "$4" --to "$W/o/$1-ck"
}

drills_safetensors() {
  local h st w='"transformer.wte.weight"'
  h=$(hf_copy st-huge-shape)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[1152921504606846976,4],\"data_offsets\":[0,0]}}"
  hf_pair st-huge-shape 3 model.safetensors "$h"
  h=$(hf_copy st-huge-shape-product)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}"
  hf_pair st-huge-shape-product 3 model.safetensors "$h"
  h=$(hf_copy st-bad-json)
  st_file "$h/model.safetensors" '{"a": {not json' 0 64
  hf_pair st-bad-json 3 model.safetensors "$h"
  h=$(hf_copy st-header-array)
  st_file "$h/model.safetensors" '[1, 2, 3]'
  hf_pair st-header-array 3 model.safetensors "$h"
  h=$(hf_copy st-len-beyond-file)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}" 1099511627776 4
  hf_pair st-len-beyond-file 3 model.safetensors "$h"
  h=$(hf_copy st-len-max)
  st_file "$h/model.safetensors" '{}' -1
  hf_pair st-len-max 3 model.safetensors "$h"
  h=$(hf_copy st-len-zero)
  st_file "$h/model.safetensors" '{}' 0
  hf_pair st-len-zero 3 model.safetensors "$h"
  h=$(hf_copy st-bad-dtype)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"Q9\",\"shape\":[300,32],\"data_offsets\":[0,38400]}}" "" 38400
  hf_pair st-bad-dtype 3 model.safetensors "$h"
  h=$(hf_copy st-offsets-beyond)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[300,32],\"data_offsets\":[0,38400]}}" "" 100
  hf_pair st-offsets-beyond 3 model.safetensors "$h"
  h=$(hf_copy st-offsets-reversed)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}" "" 8
  hf_pair st-offsets-reversed 3 model.safetensors "$h"
  h=$(hf_copy st-offsets-negative)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}" "" 8
  hf_pair st-offsets-negative 3 model.safetensors "$h"
  h=$(hf_copy st-shape-bytes-mismatch)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[300,32],\"data_offsets\":[0,8]}}" "" 8
  hf_pair st-shape-bytes-mismatch 3 model.safetensors "$h"
  h=$(hf_copy st-shape-string)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":\"big\",\"data_offsets\":[0,8]}}" "" 8
  hf_pair st-shape-string 3 model.safetensors "$h"
  h=$(hf_copy st-only-wte)
  st_file "$h/model.safetensors" "{$w:{\"dtype\":\"F32\",\"shape\":[300,32],\"data_offsets\":[0,38400]}}" "" 38400
  hf_pair st-only-wte 3 "missing tensor" "$h"
  h=$(hf_copy st-empty)
  : >"$h/model.safetensors"
  hf_pair st-empty 3 model.safetensors "$h"
  h=$(hf_copy st-truncated)
  truncate -s $(($(stat -c %s "$h/model.safetensors") / 2)) "$h/model.safetensors"
  hf_pair st-truncated 3 model.safetensors "$h"
  h=$(hf_copy st-missing)
  rm "$h/model.safetensors"
  hf_pair st-missing 3 model.safetensors "$h"
  h=$(hf_copy st-index-missing-shard)
  mv "$h/model.safetensors" "$h/model-00001-of-00002.safetensors"
  {
    printf '{"metadata": {}, "weight_map": {%s: "model-00002-of-00002.safetensors"' "$w"
    head -c 4000 "$h/model-00001-of-00002.safetensors" | grep -ao '"transformer\.h\.[^"]*"' |
      sed 's/.*/, &: "model-00001-of-00002.safetensors"/'
    printf '}}'
  } >"$h/model.safetensors.index.json"
  hf_pair st-index-missing-shard 3 model-00002-of-00002.safetensors "$h"
  h=$(hf_copy st-config-garbage)
  head -c 300 /dev/urandom >"$h/config.json"
  hf_pair st-config-garbage '2|3' config.json "$h"
  h=$(hf_copy st-config-missing)
  rm "$h/config.json"
  hf_pair st-config-missing '2|3' config.json "$h"
  h=$(hf_copy st-config-wrong-type)
  sed -i 's/"n_embd": 32/"n_embd": "wide"/' "$h/config.json"
  hf_pair st-config-wrong-type '2|3' n_embd "$h"
  h=$(hf_copy st-config-huge)
  sed -i 's/"n_embd": 32/"n_embd": 2305843009213693952/' "$h/config.json"
  hf_pair st-config-huge '2|3' n_embd "$h"
  h=$(hf_copy st-config-arch)
  sed -i 's/GPT2LMHeadModel/BertModel/' "$h/config.json"
  hf_pair st-config-arch '2|3' BertModel "$h"
}

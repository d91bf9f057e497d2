// Hugging Face GPT-2 <-> Loom conversion. Reads a transformers GPT-2 directory (config.json,
// model.safetensors or sharded safetensors with model.safetensors.index.json, tokenizer.json or
// vocab.json + merges.txt), maps names (transformer.h.{i}.attn.c_attn -> blocks.{i}.attn.qkv, ...),
// transposes Conv1D weights (stored (in,out)) into Loom's Linear (out,in), honours the tied head
// and pads/strips vocabulary rows; and writes the reverse so GPT2LMHeadModel.from_pretrained loads
// it. A round trip hf -> loom -> hf reproduces every tensor bit for bit. LlamaForCausalLM,
// Qwen2ForCausalLM and MistralForCausalLM directories go the same way (config.json through
// models/HfLlama.h, the name table in HfLlamaConvert.cpp).
//   HfModel m = hf_to_loom("gpt2/");                        // GPTConfig + Loom-named params
//   convert_hf_to_loom_checkpoint("gpt2/", "ckpt/gpt2");    // ckpt/gpt2/step_00000000 + tokenizer/
//   convert_loom_to_hf("ckpt/gpt2", "gpt2-finetuned/");
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"
#include "config/Config.pb.h"
#include "models/GPTConfig.h"

namespace loom::io {

// Tokenizer files of a model directory; "" for a file that is absent.
struct HfTokenizerFiles {
  std::string vocab_json;
  std::string merges_txt;
  std::string tokenizer_json;
  std::string tokenizer_config_json;
  std::string special_tokens_map_json;
  bool empty() const { return vocab_json.empty() && tokenizer_json.empty(); }
};

struct HfImportOptions {
  // Pad the embedding (and untied head) rows up to a multiple of this (e.g. 128, or
  // lcm(vocab_pad_multiple, tp) as config::padded_vocab_size does); padded rows are zero.
  int64_t vocab_pad_multiple = 1;
};

struct HfModel {
  models::GPTConfig config;  // vocab_size is the padded row count; dropout 0 (set it in the run)
  int64_t vocab_size = 0;    // the HF vocabulary size (before padding)
  std::map<std::string, Tensor> params;  // Loom names (models/GPT.h), f32 CPU tensors
  HfTokenizerFiles tokenizer;            // absolute paths inside the HF directory
  std::string hf_config_json;            // config.json as read (kept for export)
};

// Reads and validates an HF directory: a config.json "architectures" other than GPT2LMHeadModel
// and the Llama family is an error naming it and the supported ones. GPT-2 requires model_type
// gpt2 (or unset),
// activation_function gelu_new, layer_norm_epsilon 1e-5, n_inner null or 4*n_embd, no
// scale_attn_by_inverse_layer_idx; names tensors and fields in every error (CheckpointError).
// Accepts names with or without the "transformer." prefix and skips the attn.bias / masked_bias
// buffers of older checkpoints. Weights of any float dtype are converted to f32.
HfModel hf_to_loom(const std::string& hf_dir, const HfImportOptions& opts = {});

// The model section of a RunConfig describing `m` (vocab_size unpadded, vocab_pad_multiple).
config::ModelConfig hf_model_config(const HfModel& m, const HfImportOptions& opts = {});

// HF-named tensors (transformer.*, lm_head.weight when untied; Conv1D layout) from Loom-named
// params; rows beyond vocab_size (padding) are dropped. Tensors are f32 CPU copies.
std::map<std::string, Tensor> loom_to_hf_tensors(const std::map<std::string, Tensor>& params,
                                                 const models::GPTConfig& config,
                                                 int64_t vocab_size);

// Writes an HF directory: model.safetensors (or shards + index when max_shard_bytes > 0),
// config.json (based on `hf_config_json` when given, with the architecture fields overwritten),
// and copies of the tokenizer files that exist.
struct HfExportOptions {
  uint64_t max_shard_bytes = 0;
};
void save_hf_model(const std::string& out_dir, const std::map<std::string, Tensor>& params,
                   const models::GPTConfig& config, int64_t vocab_size,
                   const HfTokenizerFiles& tokenizer, const std::string& hf_config_json = "",
                   const HfExportOptions& opts = {});

// HF directory -> Loom checkpoint: <ckpt_root>/step_00000000 with tensors "model/<name>", meta
// "config" (RunConfig pbtxt: model section + data.tokenizer_* pointing at the copies), meta
// "hf_config" (the original config.json) and meta "hf_source"; the tokenizer files are copied to
// <ckpt_root>/tokenizer/. Returns the step directory.
std::string convert_hf_to_loom_checkpoint(const std::string& hf_dir, const std::string& ckpt_root,
                                          const HfImportOptions& opts = {});

// Loom checkpoint (a step directory, or a root whose latest checkpoint is used) -> HF directory.
// The model shape comes from meta "config"; tokenizer files from <root>/tokenizer/ if present,
// else from the config's data.tokenizer_* paths.
void convert_loom_to_hf(const std::string& ckpt_dir, const std::string& out_dir,
                        const HfExportOptions& opts = {});

// The tokenizer files stored with a checkpoint (see convert_loom_to_hf); empty if none.
HfTokenizerFiles checkpoint_tokenizer_files(const std::string& step_dir);

// The architecture knowledge HfReader (HfReader.h) reads a directory with: config.json and the
// name table. NB: the table lives here, the byte reading in HfReader.cpp.
namespace detail {

// config.json of an HF directory, parsed and checked (CheckpointError naming the field).
struct HfConfig {
  models::GPTConfig config;  // vocab_size unpadded, dropout 0
  int64_t vocab_size = 0;
  std::string json;  // config.json as read
};
HfConfig read_hf_config(const std::string& hf_dir);

// One Loom parameter and the HF tensor(s) holding it.
struct HfParam {
  std::string loom;   // Loom name (models/GPT.h)
  std::string hf;     // HF name without the "transformer." prefix ("" when `stacked`)
  Shape shape;        // Loom's logical shape (unpadded vocabulary)
  bool transposed;    // HF stores the transpose (Conv1D weights are (in, out))
  bool vocab_rows;    // dim 0 is the vocabulary (padded in a Loom model)
  // Llama family: the HF tensors stacked along dim 0 into the Loom tensor ([q; k; v], [k; v],
  // [gate; up]), each with its row count; empty: `hf` alone.
  std::vector<std::pair<std::string, int64_t>> stacked;
  std::string describe() const;  // `hf`, or the stacked names joined by " + "
};
// Every parameter of the model `c` (GPT-2, or the Llama family when c.norm is RMSNorm) with an
// HF vocabulary of `vocab` rows; lm_head.weight only when untied.
std::vector<HfParam> hf_params(const models::GPTConfig& c, int64_t vocab);
// The Llama-family table (HfLlamaConvert.cpp): model.embed_tokens, model.layers.{i}.*, model.norm.
std::vector<HfParam> hf_llama_params(const models::GPTConfig& c, int64_t vocab);
// An HF tensor name as the table spells it (no "transformer." prefix); "" for the buffers some
// checkpoints carry (attn.bias, attn.masked_bias, rotary_emb.inv_freq), which hold no weights.
std::string hf_table_name(const std::string& hf_name);
// True for a Llama-family config (RMSNorm, rotary embeddings, SwiGLU).
bool is_llama_family(const models::GPTConfig& c);
// config.json "architectures" Loom reads: GPT2LMHeadModel and models::hf_llama_architectures().
std::vector<std::string> supported_architectures();
// config.json text for a Llama-family model (HfLlamaConvert.cpp): `base` (the imported
// config.json, or "") with every shape and architecture field set from `c`; the architecture is
// kept from `base` when it is a Llama-family one, else Qwen2ForCausalLM for q/k/v-only biases and
// LlamaForCausalLM otherwise; bos/eos token ids are `eos_id` only when there is no `base`.
std::string llama_config_json(const models::GPTConfig& c, int64_t vocab_size,
                              const std::string& base, int64_t eos_id);
// generation_config.json for an exported model: bos/eos token ids of its config.json.
std::string generation_config_json(const std::string& config_json);
// The tokenizer files of an HF directory (absolute paths; "" when absent).
HfTokenizerFiles find_hf_tokenizer(const std::string& hf_dir);

}  // namespace detail

}  // namespace loom::io

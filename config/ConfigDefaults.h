// Defaults for a RunConfig: fills every unset field with the default documented in Config.proto and
// expands a model preset (gpt2-124m, llama-3.2-1b, ...) into the model fields; fields set
// explicitly always win over both. Also the derived quantities every layer needs (gradient accumulation,
// padded vocabulary) so the policy lives in one place.
//
//   apply_defaults(cfg, world_size);              // idempotent
//   int64_t ga = grad_accum_steps(cfg);           // global_batch / (micro_batch * dp)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/Config.pb.h"

namespace loom::config {

// One named model shape and architecture (the ModelConfig fields a preset fills). Members after
// block_size default to GPT-2's architecture.
struct ModelPreset {
  const char* name;
  int64_t n_layer, n_head, n_embd, vocab_size, block_size;
  ModelConfig::Norm norm = ModelConfig::LAYER_NORM;
  double norm_eps = 1e-5;
  ModelConfig::Position position = ModelConfig::LEARNED;
  double rope_theta = 10000.0;
  RopeScaling::Type rope_scaling = RopeScaling::NONE;
  double rope_factor = 1.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 8192;
  ModelConfig::Mlp mlp = ModelConfig::GELU;
  int64_t intermediate_size = 0;  // 0: 4 * n_embd
  int64_t n_kv_head = 0;          // 0: n_head
  bool bias = true, qkv_bias = true, tie_embeddings = true;
};
// gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b (the GPT-2 paper's four sizes); llama-3.2-1b,
// llama-3.2-3b, llama-3.1-8b, qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b, mistral-7b (v0.3): the
// shapes of their Hugging Face config.json files.
const std::vector<ModelPreset>& model_presets();
// nullptr when `name` is not a preset.
const ModelPreset* find_preset(const std::string& name);
// Fills the unset fields of one model section (the preset's values, else GPT-2 124M's); part of
// apply_defaults, exposed so that a preset name alone can be expanded (models::GPTConfig::preset).
void model_defaults(ModelConfig& m);

// Fills unset fields. parallel.dp unset or 0 becomes world_size / (tp * pp) when that divides;
// otherwise it stays unset and validate() reports it. Stage sub-messages (sft, ppo, dpo) are
// filled only for the active stage; loss_scale only when present.
void apply_defaults(RunConfig& cfg, int world_size);

// global_batch_size / (micro_batch_size * dp); 0 if not an integer >= 1 (validate rejects that).
int64_t grad_accum_steps(const RunConfig& cfg);

// Vocabulary padding policy: vocab_size rounded up to a multiple of lcm(vocab_pad_multiple, tp),
// so every TP rank holds the same number of embedding rows. Padded rows are never sampled.
int64_t padded_vocab_size(const RunConfig& cfg);

}  // namespace loom::config

// Defaults for a RunConfig: fills every unset field with the default documented in Config.proto and
// expands a model preset (gpt2-124m/350m/774m/1.5b) into the model fields; fields set explicitly
// always win over both. Also the derived quantities every layer needs (gradient accumulation,
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

struct ModelPreset {
  const char* name;
  int64_t n_layer, n_head, n_embd, vocab_size, block_size;
};
// gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b (the GPT-2 paper's four sizes).
const std::vector<ModelPreset>& model_presets();
// nullptr when `name` is not a preset.
const ModelPreset* find_preset(const std::string& name);

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

// GPTConfig presets (the GPT-2 paper's four sizes, as released by OpenAI / HF), validation and
// the closed-form parameter count that GPT::num_parameters() must agree with.
#include "models/GPTConfig.h"

#include <sstream>

#include "core/util/Check.h"

namespace loom::models {

namespace {
struct Preset {
  const char* name;
  int64_t n_layer, n_head, n_embd;
};
constexpr Preset kPresets[] = {
    {"gpt2-124m", 12, 12, 768},
    {"gpt2-350m", 24, 16, 1024},
    {"gpt2-774m", 36, 20, 1280},
    {"gpt2-1.5b", 48, 25, 1600},
};
}  // namespace

std::vector<std::string> GPTConfig::preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

GPTConfig GPTConfig::preset(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    GPTConfig c;
    c.n_layer = p.n_layer;
    c.n_head = p.n_head;
    c.n_embd = p.n_embd;
    c.vocab_size = 50257;
    c.block_size = 1024;
    return c;
  }
  std::ostringstream known;
  for (const Preset& p : kPresets) known << (&p == kPresets ? "" : ", ") << p.name;
  throw ValueError("GPTConfig::preset: expected one of {" + known.str() + "}, got '" + name + "'");
}

void GPTConfig::validate() const {
  LOOM_CHECK(n_layer >= 1 && n_head >= 1 && n_embd >= 1 && vocab_size >= 1 && block_size >= 1,
             "GPTConfig: expected positive n_layer/n_head/n_embd/vocab_size/block_size, got ",
             n_layer, "/", n_head, "/", n_embd, "/", vocab_size, "/", block_size);
  LOOM_CHECK(n_embd % n_head == 0, "GPTConfig: expected n_embd divisible by n_head, got n_embd ",
             n_embd, " and n_head ", n_head);
  LOOM_CHECK(dropout >= 0.0 && dropout < 1.0, "GPTConfig: expected dropout in [0, 1), got ",
             dropout);
  LOOM_CHECK(init_std > 0.0, "GPTConfig: expected init_std > 0, got ", init_std);
  LOOM_CHECK(real_vocab_size >= 0 && real_vocab_size <= vocab_size,
             "GPTConfig: expected real_vocab_size in [0, vocab_size ", vocab_size, "], got ",
             real_vocab_size);
}

int64_t GPTConfig::num_parameters() const {
  const int64_t C = n_embd, b = bias ? 1 : 0;
  const int64_t layer_norm = C + b * C;
  const int64_t per_block = 2 * layer_norm            // ln_1, ln_2
                            + C * 3 * C + b * 3 * C   // attn.qkv
                            + C * C + b * C           // attn.proj
                            + C * 4 * C + b * 4 * C   // mlp.fc
                            + 4 * C * C + b * C;      // mlp.proj
  int64_t n = vocab_size * C + block_size * C + n_layer * per_block + layer_norm;
  if (!tie_embeddings) n += vocab_size * C;
  return n;
}

}  // namespace loom::models

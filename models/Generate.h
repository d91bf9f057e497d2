// Autoregressive generation from a GPT with a KV cache: greedy decoding (temperature 0) or
// sampling with temperature, top-k and top-p (nucleus) filtering, stopping a row at an EOS id and
// never letting a sequence grow past block_size. The random draw for (prompt r, new token s) is
// Philox counter s * n_prompts + r under opts.seed, so results are reproducible for a seed and do
// not depend on thread count or device.
//   SamplingOptions o;  o.max_new_tokens = 20;  o.temperature = 0.8;  o.top_k = 40;  o.seed = 7;
//   std::vector<std::vector<int64_t>> out = generate(model, {{464, 3290}, {15496, 995}}, o);
//   // out[i] holds only the new tokens of prompt i (prompt not repeated), EOS included if drawn.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "models/GPT.h"

namespace loom::models {

struct SamplingOptions {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0 = greedy (argmax; top_k / top_p then play no part)
  int64_t top_k = 0;         // keep the k most probable tokens; 0 = all
  double top_p = 1.0;        // keep the smallest most-probable set with mass >= top_p; 1 = all
  uint64_t seed = 0;
  std::optional<int64_t> eos_id;  // a row stops after drawing it
  // Only ids < vocab_size may be drawn (0 = every logit). Set it to the tokenizer's size when the
  // model's vocabulary is padded (config::padded_vocab_size), so padding rows are never drawn.
  int64_t vocab_size = 0;

  // ValueError naming the field: max_new_tokens < 0, temperature < 0 or not finite, top_k < 0,
  // top_p not in (0, 1], vocab_size < 0.
  void validate() const;
};

// The distribution a draw uses for one row of logits: (token, probability) pairs, most probable
// first (ties: lower id first), after temperature, then top-k, then top-p, renormalised to sum 1.
// Greedy (temperature 0 or top_k 1) gives the single argmax with probability 1.
std::vector<std::pair<int64_t, double>> sampling_distribution(std::span<const double> logits,
                                                              const SamplingOptions& opts);

// Inverse-CDF draw from sampling_distribution(logits, opts) with u uniform in [0, 1).
int64_t sample_token(std::span<const double> logits, const SamplingOptions& opts, double u);

// Continues every prompt (token ids, each non-empty and at most block_size long; lengths may
// differ: prompts of one length are decoded together as one batch). Returns the new tokens per
// prompt: max_new_tokens of them, fewer when EOS is drawn or the sequence reaches block_size.
// Runs in eval mode without autograd; the model's training flag is restored afterwards.
std::vector<std::vector<int64_t>> generate(GPT& model,
                                           const std::vector<std::vector<int64_t>>& prompts,
                                           const SamplingOptions& opts);

}  // namespace loom::models

// Batched autoregressive generation from a GPT with a KV cache: many prompts of different
// lengths, n samples each, decoded together. Prompts are left-padded into one prefill (each
// distinct prompt once); its cache rows are copied to every sample of the prompt; each step feeds
// one token per live row, and rows that finish (EOS, max_new_tokens, block_size) leave the batch.
// Greedy decoding (temperature 0) or sampling with temperature, top-k and top-p. Every draw is
// keyed by its request, sample and step (GenerationRequest), so results never depend on the batch
// composition, thread count or device, and are the same on every TP rank.
//   SamplingOptions o;  o.max_new_tokens = 20;  o.temperature = 0.8;  o.top_k = 40;
//   auto out = generate_batch(model, {{{464, 3290}, /*num_samples=*/4, /*seed=*/7}}, o);
//   // out[0][j]: the new tokens of sample j (prompt not repeated), EOS included if drawn.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "models/GPT.h"

namespace loom::models {

// Bytes of KV cache and prefill attention scores one generate_batch batch may use per rank when
// SamplingOptions::max_batch_rows is 0 (larger requests are decoded in several batches).
inline constexpr int64_t kBatchMemoryBudget = int64_t(1) << 30;

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
  // generate_batch decodes at most this many samples at once (0 = as many as keep this rank's
  // KV cache and prefill attention scores within kBatchMemoryBudget). Outputs do not depend on it.
  int64_t max_batch_rows = 0;

  // ValueError naming the field: max_new_tokens < 0, temperature < 0 or not finite, top_k < 0,
  // top_p not in (0, 1], vocab_size < 0, max_batch_rows < 0.
  void validate() const;
};

// The distribution a draw uses for one row of logits: (token, probability) pairs, most probable
// first (ties: lower id first), after temperature, then top-k, then top-p, renormalised to sum 1.
// Greedy (temperature 0 or top_k 1) gives the single argmax with probability 1.
std::vector<std::pair<int64_t, double>> sampling_distribution(std::span<const double> logits,
                                                              const SamplingOptions& opts);

// Inverse-CDF draw from sampling_distribution(logits, opts) with u uniform in [0, 1).
int64_t sample_token(std::span<const double> logits, const SamplingOptions& opts, double u);

// The natural log of `token`'s probability in sampling_distribution(logits, opts): what the draw
// used (-inf for a token top-k / top-p left out). Without top-k / top-p it is the log-softmax of
// logits / temperature over the first vocab_size logits, without sorting.
double sampling_logprob(std::span<const double> logits, const SamplingOptions& opts,
                        int64_t token);

// One prompt (token ids, non-empty, at most block_size long) and how many continuations to draw.
// The uniform draw for sample j's new token s is Philox(seed) at counter
// s * key_stride + key_offset + j (key_stride 0 means num_samples): a pure function of the request.
struct GenerationRequest {
  std::vector<int64_t> prompt;
  int64_t num_samples = 1;
  uint64_t seed = 0;
  uint64_t key_stride = 0;
  uint64_t key_offset = 0;
};

// The new tokens of every sample: out[i][j] for sample j of request i, max_new_tokens of them,
// fewer when EOS is drawn or the sequence reaches block_size. opts.seed plays no part (each
// request has its own). Runs in eval mode without autograd; the model's training flag is restored
// afterwards. Collective over the model's TP and PP groups (call it on every rank with the same
// arguments). With `logprobs`, (*logprobs)[i][j][s] is the sampling_logprob of token s of that
// sample, from the logits it was drawn from (on the last pipeline stage; 0 on the others).
using SampleLogprobs = std::vector<std::vector<std::vector<double>>>;
std::vector<std::vector<std::vector<int64_t>>> generate_batch(
    GPT& model, const std::vector<GenerationRequest>& requests, const SamplingOptions& opts,
    SampleLogprobs* logprobs = nullptr);

// generate_batch with one sample of each prompt: prompt r is the request {prompts[r], 1,
// opts.seed, key_stride N, key_offset r} of N = prompts.size() (the draw of (prompt r, new token
// s) is Philox counter s * N + r under opts.seed). Returns out[r], the new tokens of prompt r.
std::vector<std::vector<int64_t>> generate(GPT& model,
                                           const std::vector<std::vector<int64_t>>& prompts,
                                           const SamplingOptions& opts);

}  // namespace loom::models

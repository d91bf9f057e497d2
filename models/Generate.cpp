// Generation with a KV cache: prefill each group of equal-length prompts in one forward, then
// one token per step through GPT::forward_cached. Sampling runs on the host in double precision
// over one (V) row of logits per prompt (see Generate.h for the filtering order).
#include "models/Generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "core/autograd/GradMode.h"
#include "core/random/Philox.h"
#include "core/util/Check.h"

namespace loom::models {

void SamplingOptions::validate() const {
  LOOM_CHECK(max_new_tokens >= 0, "generate: expected max_new_tokens >= 0, got ", max_new_tokens);
  LOOM_CHECK(std::isfinite(temperature) && temperature >= 0.0,
             "generate: expected temperature >= 0 (0 = greedy), got ", temperature);
  LOOM_CHECK(top_k >= 0, "generate: expected top_k >= 0 (0 = off), got ", top_k);
  LOOM_CHECK(top_p > 0.0 && top_p <= 1.0, "generate: expected top_p in (0, 1], got ", top_p);
  LOOM_CHECK(vocab_size >= 0, "generate: expected vocab_size >= 0 (0 = all logits), got ",
             vocab_size);
}

namespace {

int64_t usable_vocab(std::span<const double> logits, const SamplingOptions& opts) {
  const int64_t n = int64_t(logits.size());
  return opts.vocab_size > 0 ? std::min(opts.vocab_size, n) : n;
}

// First index of the largest logit among the first n (NaN never wins; checked by the caller).
int64_t argmax_of(std::span<const double> logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (logits[size_t(i)] > logits[size_t(best)]) best = i;
  return best;
}

void check_logits(std::span<const double> logits, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double l = logits[size_t(i)];
    LOOM_CHECK(!std::isnan(l) && l != std::numeric_limits<double>::infinity(),
               "generate: expected finite logits, got ", l, " at token ", i);
  }
}

}  // namespace

std::vector<std::pair<int64_t, double>> sampling_distribution(std::span<const double> logits,
                                                              const SamplingOptions& opts) {
  opts.validate();
  const int64_t n = usable_vocab(logits, opts);
  LOOM_CHECK(n >= 1, "generate: expected at least one logit, got none");
  check_logits(logits, n);
  if (opts.temperature == 0.0 || opts.top_k == 1) return {{argmax_of(logits, n), 1.0}};

  // Most probable first; equal logits keep the lower id first.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  auto before = [&](int64_t a, int64_t b) {
    const double la = logits[size_t(a)], lb = logits[size_t(b)];
    return la > lb || (la == lb && a < b);
  };
  const int64_t keep = opts.top_k > 0 ? std::min(opts.top_k, n) : n;
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), before);
  order.resize(size_t(keep));

  const double top = logits[size_t(order[0])];
  LOOM_CHECK(std::isfinite(top), "generate: expected a finite largest logit, got ", top);
  std::vector<std::pair<int64_t, double>> dist;
  double total = 0.0;
  for (int64_t id : order) {
    const double p = std::exp((logits[size_t(id)] - top) / opts.temperature);
    if (p == 0.0) break;  // sorted: every later one is 0 too
    dist.emplace_back(id, p);
    total += p;
  }
  // Nucleus: the shortest prefix whose mass reaches top_p (at least one token).
  size_t cut = dist.size();
  if (opts.top_p < 1.0) {
    double mass = 0.0;
    for (size_t i = 0; i < dist.size(); ++i) {
      mass += dist[i].second / total;
      if (mass >= opts.top_p) {
        cut = i + 1;
        break;
      }
    }
    dist.resize(cut);
    total = 0.0;
    for (const auto& e : dist) total += e.second;
  }
  for (auto& e : dist) e.second /= total;
  return dist;
}

int64_t sample_token(std::span<const double> logits, const SamplingOptions& opts, double u) {
  LOOM_CHECK(u >= 0.0 && u < 1.0, "sample_token: expected u in [0, 1), got ", u);
  if (opts.temperature == 0.0 || opts.top_k == 1) {
    opts.validate();
    const int64_t n = usable_vocab(logits, opts);
    LOOM_CHECK(n >= 1, "generate: expected at least one logit, got none");
    check_logits(logits, n);
    return argmax_of(logits, n);
  }
  std::vector<std::pair<int64_t, double>> dist = sampling_distribution(logits, opts);
  double cum = 0.0;
  for (const auto& [id, p] : dist) {
    cum += p;
    if (u < cum) return id;
  }
  return dist.back().first;  // u just below 1 and the sum rounded below it
}

namespace {

using Prompts = std::vector<std::vector<int64_t>>;

void check_prompts(const Prompts& prompts, const GPTConfig& c) {
  LOOM_CHECK(!prompts.empty(), "generate: expected at least one prompt, got none");
  for (size_t r = 0; r < prompts.size(); ++r) {
    const auto& p = prompts[r];
    LOOM_CHECK(!p.empty(), "generate: expected a non-empty prompt, got an empty prompt (index ", r,
               ")");
    LOOM_CHECK(int64_t(p.size()) <= c.block_size, "generate: expected a prompt of at most ",
               c.block_size, " tokens (block_size), got ", p.size(), " (prompt ", r, ")");
    for (size_t j = 0; j < p.size(); ++j)
      LOOM_CHECK(p[j] >= 0 && p[j] < c.vocab_size, "generate: expected prompt ids in [0, ",
                 c.vocab_size, "), got ", p[j], " (prompt ", r, ", position ", j, ")");
  }
}

// One cached forward through every pipeline stage: ids (B,T) are known on every rank; stage s > 0
// receives stage s-1's hidden states (B,T,C). Returns the last position's logits (B,1,V) on the
// last stage, undefined elsewhere.
Tensor pipeline_forward(GPT& model, const Tensor& ids, KVCache& cache) {
  Tensor x = ids;
  Communicator* pp = model.pp();
  if (!model.is_first()) {
    x = Tensor::empty(model.activation_shape(ids.size(0), ids.size(1)), cache.dtype(),
                      cache.device());
    pp->recv(x, model.stage() - 1, /*tag=*/0);
  }
  Tensor y = model.forward_cached(x, cache, /*last_only=*/true);
  if (model.is_last()) return y;
  pp->send(y.contiguous(), model.stage() + 1, /*tag=*/0);
  return Tensor();
}

// Decodes the prompts `rows` (all of one length) as one batch, appending to out[row]. Collective
// over the model's TP and PP groups: the last stage draws the tokens (every TP rank the same,
// from the same logits and counters) and sends them to the other stages.
void generate_group(GPT& model, const Prompts& prompts, const std::vector<size_t>& rows,
                    const SamplingOptions& opts, Prompts& out) {
  const GPTConfig& c = model.config();
  const int64_t B = int64_t(rows.size()), P = int64_t(prompts[rows[0]].size());
  const int64_t n_new = std::min(opts.max_new_tokens, c.block_size - P);
  if (n_new <= 0) return;
  // The last drawn token is never fed back, so P + n_new - 1 positions suffice.
  KVCache cache = model.new_cache(B, P + n_new - 1);
  std::vector<int64_t> ids;
  for (size_t r : rows) ids.insert(ids.end(), prompts[r].begin(), prompts[r].end());
  Tensor logits = pipeline_forward(model, Tensor::from_vector(ids, {B, P}, cache.device()), cache);
  const uint64_t n_prompts = prompts.size();
  std::vector<bool> done(size_t(B), false);
  Tensor drawn = Tensor::zeros({B}, DType::I64);
  for (int64_t s = 0; s < n_new; ++s) {
    std::vector<int64_t> next(size_t(B), 0);  // finished rows feed 0; their output is ignored
    if (model.is_last()) {
      const std::vector<double> host = logits.to_vector<double>();  // (B,V)
      const int64_t V = logits.size(2);
      for (int64_t b = 0; b < B; ++b) {
        if (done[size_t(b)]) continue;
        const size_t r = rows[size_t(b)];
        const double u = philox::uniform_at(opts.seed, uint64_t(s) * n_prompts, r);
        next[size_t(b)] =
            sample_token(std::span(host).subspan(size_t(b * V), size_t(V)), opts, u);
      }
    }
    if (model.num_stages() > 1) {
      Tensor(drawn).copy_(Tensor::from_vector(next, {B}));
      model.pp()->broadcast(drawn, model.num_stages() - 1);
      next = drawn.to_vector<int64_t>();
    }
    for (int64_t b = 0; b < B; ++b) {
      if (done[size_t(b)]) continue;
      out[rows[size_t(b)]].push_back(next[size_t(b)]);
      done[size_t(b)] = opts.eos_id.has_value() && next[size_t(b)] == *opts.eos_id;
    }
    if (s + 1 == n_new || std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    logits = pipeline_forward(model, Tensor::from_vector(next, {B, 1}, cache.device()), cache);
  }
}

// Puts the model in eval mode for a scope and restores its training flag afterwards.
class EvalScope {
 public:
  explicit EvalScope(GPT& m) : model_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalScope() { model_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  GPT& model_;
  bool was_training_;
};

}  // namespace

Prompts generate(GPT& model, const Prompts& prompts, const SamplingOptions& opts) {
  opts.validate();
  check_prompts(prompts, model.config());
  EvalScope eval(model);
  NoGradGuard no_grad;
  std::map<size_t, std::vector<size_t>> by_length;  // prompt length -> prompt indices
  for (size_t r = 0; r < prompts.size(); ++r) by_length[prompts[r].size()].push_back(r);
  Prompts out(prompts.size());
  for (const auto& [length, rows] : by_length) generate_group(model, prompts, rows, opts, out);
  return out;
}

}  // namespace loom::models

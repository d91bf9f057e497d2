// Batched generation with a KV cache (see Generate.h): one left-padded prefill of the distinct
// prompts, their cache rows copied to the samples, then one token per live row per step through
// GPT::forward_cached, dropping finished rows from the cache. Sampling runs on the host in double
// precision over one (V) row of logits per sample (see Generate.h for the filtering order).
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
  LOOM_CHECK(max_batch_rows >= 0, "generate: expected max_batch_rows >= 0 (0 = by memory), got ",
             max_batch_rows);
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

  // Most probable first; equal logits keep the lower id first. That order is total, so sorting
  // (logit, id) pairs gives the same sequence with any algorithm (nth_element, then sort).
  std::vector<std::pair<double, int64_t>> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = {logits[size_t(i)], i};
  auto before = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  const int64_t keep = opts.top_k > 0 ? std::min(opts.top_k, n) : n;
  if (keep < n) {
    std::nth_element(order.begin(), order.begin() + keep, order.end(), before);
    order.resize(size_t(keep));
  }
  std::sort(order.begin(), order.end(), before);

  const double top = order[0].first;
  LOOM_CHECK(std::isfinite(top), "generate: expected a finite largest logit, got ", top);
  std::vector<std::pair<int64_t, double>> dist;
  dist.reserve(order.size());
  double total = 0.0;
  for (const auto& [logit, id] : order) {
    const double p = std::exp((logit - top) / opts.temperature);
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

namespace {

// The largest of the first n logits, in one pass (four independent maxima) that also runs
// check_logits' test (NaN or +inf: it then throws, naming the token).
double checked_max(std::span<const double> logits, int64_t n) {
  const double inf = std::numeric_limits<double>::infinity();
  double mx[4] = {logits[0], logits[0], logits[0], logits[0]};
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    const double l = logits[size_t(i)];
    bad |= !(l < inf);
    mx[i % 4] = std::max(mx[i % 4], l);
  }
  if (bad) check_logits(logits, n);
  const double top = std::max(std::max(mx[0], mx[1]), std::max(mx[2], mx[3]));
  LOOM_CHECK(std::isfinite(top), "generate: expected a finite largest logit, got ", double(top));
  return top;
}

// The inverse-CDF draw over the whole vocabulary (no top-k / top-p) without sorting it: a
// quickselect descent to the token whose mass interval (in the sorted order) holds u * total.
// Returns -1 when u * total lies within a rounding guard of an interval's end, where the sums in
// another order might round to the other side; the caller then takes the sorted path, so the
// token is always the one sampling_distribution's inverse CDF gives.
int64_t draw_unfiltered(std::span<const double> logits, int64_t n, double temperature, double u) {
  const double top = checked_max(logits, n);
  // Scratch kept per thread: one draw per row per step would otherwise allocate four buffers.
  thread_local std::vector<double> p;
  thread_local std::vector<int64_t> idx, ahead, behind;
  for (auto* v : {&idx, &ahead, &behind}) v->resize(size_t(n));
  p.resize(size_t(n));
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    p[size_t(i)] = std::exp((logits[size_t(i)] - top) / temperature);
    total += p[size_t(i)];
    idx[size_t(i)] = i;
  }
  auto before = [&](int64_t a, int64_t b) {  // sampling_distribution's order
    const double la = logits[size_t(a)], lb = logits[size_t(b)];
    return la > lb || (la == lb && a < b);
  };
  // n roundings of numbers <= total, each at most total * 2^-53, are far below 1e-9 * total.
  const double target = u * total, guard = 1e-9 * total;
  double mass_before = 0.0;  // of every token ordered before the candidates idx[0, m)
  size_t m = size_t(n);
  while (m > 16) {
    // Branch-free split of the candidates around a pivot: those ordered before it, and after it.
    const int64_t pivot = idx[m / 2];
    const double lp = logits[size_t(pivot)];
    size_t na = 0, nb = 0;
    double mass = 0.0;
    for (size_t k = 0; k < m; ++k) {
      const int64_t i = idx[k];
      const double l = logits[size_t(i)];
      const bool is_before = (l > lp) | ((l == lp) & (i < pivot));
      ahead[na] = i;
      behind[nb] = i;
      na += is_before;
      nb += !is_before & (i != pivot);
      mass += is_before ? p[size_t(i)] : 0.0;
    }
    const double a = mass_before + mass, b = a + p[size_t(pivot)];
    if (std::abs(target - a) <= guard || std::abs(target - b) <= guard) return -1;
    if (target < a) {
      std::copy(ahead.begin(), ahead.begin() + int64_t(na), idx.begin());
      m = na;
    } else if (target < b) {
      return pivot;
    } else {
      mass_before = b;
      std::copy(behind.begin(), behind.begin() + int64_t(nb), idx.begin());
      m = nb;
    }
  }
  std::sort(idx.begin(), idx.begin() + int64_t(m), before);
  for (size_t k = 0; k < m; ++k) {
    const double b = mass_before + p[size_t(idx[k])];
    if (std::abs(target - b) <= guard) return -1;
    if (target < b) return idx[k];
    mass_before = b;
  }
  return -1;
}

}  // namespace

int64_t sample_token(std::span<const double> logits, const SamplingOptions& opts, double u) {
  LOOM_CHECK(u >= 0.0 && u < 1.0, "sample_token: expected u in [0, 1), got ", u);
  if (opts.temperature == 0.0 || opts.top_k == 1) {
    opts.validate();
    const int64_t n = usable_vocab(logits, opts);
    LOOM_CHECK(n >= 1, "generate: expected at least one logit, got none");
    check_logits(logits, n);
    return argmax_of(logits, n);
  }
  if (opts.top_k == 0 && opts.top_p == 1.0) {
    opts.validate();
    const int64_t n = usable_vocab(logits, opts);
    LOOM_CHECK(n >= 1, "generate: expected at least one logit, got none");
    const int64_t id = draw_unfiltered(logits, n, opts.temperature, u);
    if (id >= 0) return id;
  }
  std::vector<std::pair<int64_t, double>> dist = sampling_distribution(logits, opts);
  double cum = 0.0;
  for (const auto& [id, p] : dist) {
    cum += p;
    if (u < cum) return id;
  }
  return dist.back().first;  // u just below 1 and the sum rounded below it
}

double sampling_logprob(std::span<const double> logits, const SamplingOptions& opts,
                        int64_t token) {
  opts.validate();
  const int64_t n = usable_vocab(logits, opts);
  LOOM_CHECK(token >= 0 && token < n, "sampling_logprob: expected a token in [0, ", n, "), got ",
             token);
  const bool filtered = opts.temperature == 0.0 || opts.top_k > 0 || opts.top_p < 1.0;
  if (filtered) {
    for (const auto& [id, p] : sampling_distribution(logits, opts))
      if (id == token) return std::log(p);
    return -std::numeric_limits<double>::infinity();
  }
  const double top = checked_max(logits, n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += std::exp((logits[size_t(i)] - top) / opts.temperature);
  return (logits[size_t(token)] - top) / opts.temperature - std::log(total);
}

namespace {

using Prompts = std::vector<std::vector<int64_t>>;
using Outputs = std::vector<Prompts>;

// The tokens of a batch and, when asked for, their sampling_logprobs (the same shape).
struct Decoded {
  Outputs tokens;
  SampleLogprobs logprobs;
};

void check_requests(const std::vector<GenerationRequest>& requests, const GPTConfig& c) {
  LOOM_CHECK(!requests.empty(), "generate: expected at least one prompt, got none");
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& p = requests[r].prompt;
    LOOM_CHECK(requests[r].num_samples >= 1, "generate: expected num_samples >= 1, got ",
               requests[r].num_samples, " (prompt ", r, ")");
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
// receives stage s-1's hidden states (B,T,C). Returns the last slot's logits (B,1,V) on the
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

// One sample being decoded.
struct Row {
  size_t request, sample;
  int64_t prompt;  // its prompt's row in the prefill batch
  int64_t n_new;   // how many tokens it may draw
};

// Decodes every sample of a set of requests together (see the file comment). Collective over the
// model's TP and PP groups: the last stage draws the tokens (every TP rank the same, from the same
// gathered logits and keys) and broadcasts them to the other stages.
class BatchDecoder {
 public:
  BatchDecoder(GPT& model, const std::vector<GenerationRequest>& requests,
               const SamplingOptions& opts, bool with_logprobs)
      : model_(model), requests_(requests), opts_(opts), with_logprobs_(with_logprobs) {
    const GPTConfig& c = model.config();
    out_.tokens.resize(requests.size());
    if (with_logprobs) out_.logprobs.resize(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      const GenerationRequest& q = requests[i];
      out_.tokens[i].resize(size_t(q.num_samples));
      if (with_logprobs) out_.logprobs[i].resize(size_t(q.num_samples));
      const int64_t n_new = std::min(opts.max_new_tokens, c.block_size - int64_t(q.prompt.size()));
      if (n_new <= 0) continue;
      auto [it, fresh] = prompt_rows_.try_emplace(q.prompt, int64_t(prompts_.size()));
      if (fresh) prompts_.push_back(&it->first);
      for (int64_t j = 0; j < q.num_samples; ++j)
        rows_.push_back({i, size_t(j), it->second, n_new});
    }
  }

  Decoded run() {
    if (rows_.empty()) return std::move(out_);
    std::vector<size_t> live(rows_.size());  // the rows_ of the cache rows, in order
    std::iota(live.begin(), live.end(), size_t(0));
    std::vector<int64_t> logit_rows;  // each live row's logits row: at step 0 its prompt's
    for (const Row& r : rows_) logit_rows.push_back(r.prompt);
    KVCache cache = prefill();
    Tensor logits = pipeline_forward(model_, prefill_ids(cache.device()), cache);
    for (int64_t s = 0;; ++s) {
      const std::vector<int64_t> next = draw(logits, logit_rows, live, s);
      std::vector<size_t> still;
      std::vector<int64_t> keep, feed;  // the cache rows that continue and the tokens they feed
      for (size_t b = 0; b < live.size(); ++b) {
        if (!append(live[b], next[b])) continue;
        still.push_back(live[b]);
        keep.push_back(logit_rows[b]);  // the prefill's prompt row at step 0, else the row itself
        feed.push_back(next[b]);
      }
      if (still.empty()) break;
      // Step 0 copies each prompt's rows to its samples; later steps drop the finished rows.
      if (s == 0 || still.size() < live.size()) cache = cache.select_rows(keep);
      live = std::move(still);
      logit_rows.resize(live.size());
      std::iota(logit_rows.begin(), logit_rows.end(), int64_t(0));
      const Tensor ids = Tensor::from_vector(feed, {int64_t(feed.size()), 1}).to(cache.device());
      logits = pipeline_forward(model_, ids, cache);
    }
    return std::move(out_);
  }

 private:
  // Appends `token` to row i's output; false when the row is finished (EOS or its last token).
  bool append(size_t i, int64_t token) {
    const Row& r = rows_[i];
    std::vector<int64_t>& o = out_.tokens[r.request][r.sample];
    o.push_back(token);
    return !(opts_.eos_id.has_value() && token == *opts_.eos_id) && int64_t(o.size()) < r.n_new;
  }

  // A cache for the distinct prompts, left-padded to the longest, with room for the longest
  // continuation (its last token is never fed back).
  KVCache prefill() {
    int64_t most_new = 0;
    for (const auto* p : prompts_) longest_ = std::max(longest_, int64_t(p->size()));
    for (const Row& r : rows_) most_new = std::max(most_new, r.n_new);
    std::vector<int64_t> pad;
    for (const auto* p : prompts_) pad.push_back(longest_ - int64_t(p->size()));
    return model_.new_cache(int64_t(prompts_.size()), longest_ + most_new - 1, std::move(pad));
  }

  // The prompts as (U, longest) ids, each left-padded with id 0.
  Tensor prefill_ids(Device device) const {
    const int64_t U = int64_t(prompts_.size());
    std::vector<int64_t> ids(size_t(U * longest_), 0);
    for (int64_t u = 0; u < U; ++u) {
      const std::vector<int64_t>& p = *prompts_[size_t(u)];
      std::copy(p.begin(), p.end(), ids.begin() + (u + 1) * longest_ - int64_t(p.size()));
    }
    return Tensor::from_vector(ids, {U, longest_}).to(device);
  }

  // Token s of every live row, drawn on the last stage from its logits row (B,1,V) and shared
  // with the other pipeline stages.
  std::vector<int64_t> draw(const Tensor& logits, const std::vector<int64_t>& logit_rows,
                            const std::vector<size_t>& live, int64_t s) {
    const int64_t B = int64_t(live.size());
    std::vector<int64_t> next(size_t(B), 0);
    if (model_.is_last()) {
      const std::vector<double> host = logits.to_vector<double>();  // (rows, V)
      const int64_t V = logits.size(2);
      for (int64_t b = 0; b < B; ++b) {
        const Row& r = rows_[live[size_t(b)]];
        const GenerationRequest& q = requests_[r.request];
        const uint64_t stride = q.key_stride > 0 ? q.key_stride : uint64_t(q.num_samples);
        const double u = philox::uniform_at(q.seed, uint64_t(s) * stride, q.key_offset + r.sample);
        const auto row = std::span(host).subspan(size_t(logit_rows[size_t(b)] * V), size_t(V));
        next[size_t(b)] = sample_token(row, opts_, u);
        if (with_logprobs_)
          out_.logprobs[r.request][r.sample].push_back(
              sampling_logprob(row, opts_, next[size_t(b)]));
      }
    } else if (with_logprobs_) {
      for (size_t i : live) out_.logprobs[rows_[i].request][rows_[i].sample].push_back(0.0);
    }
    if (model_.num_stages() > 1) {
      Tensor drawn = Tensor::from_vector(next, {B});
      model_.pp()->broadcast(drawn, model_.num_stages() - 1);
      next = drawn.to_vector<int64_t>();
    }
    return next;
  }

  GPT& model_;
  const std::vector<GenerationRequest>& requests_;
  const SamplingOptions& opts_;
  bool with_logprobs_;
  Decoded out_;
  std::map<std::vector<int64_t>, int64_t> prompt_rows_;  // distinct prompt -> its prefill row
  std::vector<const std::vector<int64_t>*> prompts_;     // by prefill row (keys of prompt_rows_)
  std::vector<Row> rows_;
  int64_t longest_ = 0;
};

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

namespace {

// The samples one batch may hold: opts.max_batch_rows, or as many as keep the KV cache (f32, this
// rank's kv heads, every layer) and the padded prefill's attention scores (B,H,P,P) within
// kBatchMemoryBudget. The same on every rank (only global sizes count), so batches match.
int64_t batch_rows(const GPT& model, const std::vector<GenerationRequest>& requests,
                   const SamplingOptions& opts) {
  if (opts.max_batch_rows > 0) return opts.max_batch_rows;
  const GPTConfig& c = model.config();
  int64_t longest = 1;
  for (const GenerationRequest& q : requests) longest = std::max(longest, int64_t(q.prompt.size()));
  const int64_t slots = longest + std::min(opts.max_new_tokens, c.block_size);
  const int64_t tp = model.tp().size();
  const int64_t kv_heads = std::max<int64_t>(1, c.kv_heads() / tp);
  const int64_t per_row = 4 * (c.n_layer * 2 * kv_heads * c.head_dim() * slots +
                               (c.n_head / tp) * longest * longest);
  return std::max<int64_t>(1, kBatchMemoryBudget / per_row);
}

}  // namespace

Outputs generate_batch(GPT& model, const std::vector<GenerationRequest>& requests,
                       const SamplingOptions& opts, SampleLogprobs* logprobs) {
  opts.validate();
  check_requests(requests, model.config());
  EvalScope eval(model);
  NoGradGuard no_grad;
  const int64_t limit = batch_rows(model, requests, opts);
  // Split the samples, in order, into batches of at most `limit`; a request split between two
  // batches keeps each sample's key (key_stride and key_offset), so outputs do not change.
  Outputs out(requests.size());
  if (logprobs) *logprobs = SampleLogprobs(requests.size());
  std::vector<GenerationRequest> batch;
  std::vector<size_t> owner;  // the request each batch entry came from
  int64_t rows = 0;
  auto flush = [&] {
    Decoded part = BatchDecoder(model, batch, opts, logprobs != nullptr).run();
    for (size_t k = 0; k < part.tokens.size(); ++k) {
      for (auto& sample : part.tokens[k]) out[owner[k]].push_back(std::move(sample));
      if (logprobs)
        for (auto& lp : part.logprobs[k]) (*logprobs)[owner[k]].push_back(std::move(lp));
    }
    batch.clear();
    owner.clear();
    rows = 0;
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationRequest& q = requests[i];
    const uint64_t stride = q.key_stride > 0 ? q.key_stride : uint64_t(q.num_samples);
    for (int64_t first = 0; first < q.num_samples;) {
      const int64_t n = std::min(q.num_samples - first, limit - rows);
      batch.push_back({q.prompt, n, q.seed, stride, q.key_offset + uint64_t(first)});
      owner.push_back(i);
      first += n;
      rows += n;
      if (rows == limit) flush();
    }
  }
  if (!batch.empty()) flush();
  return out;
}

Prompts generate(GPT& model, const Prompts& prompts, const SamplingOptions& opts) {
  std::vector<GenerationRequest> requests;
  for (size_t r = 0; r < prompts.size(); ++r)
    requests.push_back({prompts[r], 1, opts.seed, prompts.size(), r});
  Prompts out;
  for (Prompts& samples : generate_batch(model, requests, opts))
    out.push_back(std::move(samples[0]));
  return out;
}

}  // namespace loom::models

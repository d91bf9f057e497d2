// Generation with a KV cache (models/Generate.h, models/KVCache.h): cached logits equal the full
// forward's (left-padded ragged rows too), cached greedy decoding equals recomputing the whole
// sequence each step, the batched engine's outputs do not depend on the batch (ragged prompts,
// samples per prompt, rows leaving it) for GPT-2 and a Llama config, draws follow their keys, the
// sampling filters (temperature, top-k, top-p) on fixed distributions, seeded reproducibility, EOS
// and block_size stops, and option validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "core/autograd/GradMode.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "core/random/Philox.h"
#include "core/util/Check.h"
#include "models/Generate.h"

namespace loom::models {
namespace {

GPTConfig tiny_config() {
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  c.vocab_size = 64;
  c.block_size = 16;
  c.init_std = 0.1;  // wider than GPT-2's 0.02 so the next-token distributions are not flat
  return c;
}

// A Llama-family config: RMSNorm, rotary positions, SwiGLU, 4 query heads sharing 2 kv heads.
GPTConfig tiny_llama_config() {
  GPTConfig c = tiny_config();
  c.norm = NormKind::RMSNorm;
  c.position = PositionKind::Rope;
  c.mlp = MlpKind::SwiGLU;
  c.intermediate_size = 48;
  c.n_kv_head = 2;
  c.bias = false;
  c.tie_embeddings = false;
  return c;
}

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> u = Tensor::rand({n}, gen, DType::F64).to_vector<double>();
  std::vector<int64_t> ids;
  for (double x : u) ids.push_back(int64_t(x * double(vocab)));
  return ids;
}

// Greedy decoding without a cache: the whole sequence through forward() for every new token.
std::vector<int64_t> greedy_by_recompute(GPT& model, std::vector<int64_t> seq, int64_t n_new) {
  NoGradGuard no_grad;
  const size_t prompt_len = seq.size();
  for (int64_t s = 0; s < n_new && int64_t(seq.size()) < model.config().block_size; ++s) {
    const int64_t T = int64_t(seq.size());
    Tensor logits = model.forward(Tensor::from_vector(seq, {1, T}));  // (1,T,V)
    seq.push_back(int64_t(argmax(logits.select(1, T - 1), -1).item()));
  }
  return {seq.begin() + int64_t(prompt_len), seq.end()};
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0.0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Feeds a 13-token sequence in chunks 5 (prefill), 1, 3, 1, 1, 2 and compares every chunk's
// logits with the full forward over all 13 tokens at the same positions.
double cached_vs_full_error(DType dtype) {
  GPT model(tiny_config(), {}, dtype);
  model.init_weights(11);
  model.eval();
  const int64_t B = 2, T = 13;
  std::vector<int64_t> ids = random_ids(B * T, 64, 3);
  Tensor all = Tensor::from_vector(ids, {B, T});
  NoGradGuard no_grad;
  Tensor full = model.forward(all);  // (B,T,V)
  KVCache cache = model.new_cache(B, T);
  double err = 0.0;
  int64_t pos = 0;
  for (int64_t n : {5, 1, 3, 1, 1, 2}) {
    Tensor got = model.forward_cached(all.narrow(1, pos, n).contiguous(), cache);
    EXPECT_EQ(got.shape(), (Shape{B, n, 64}));
    err = std::max(err, max_abs_diff(got, full.narrow(1, pos, n)));
    pos += n;
    EXPECT_EQ(cache.length(), pos);
  }
  EXPECT_EQ(pos, T);
  return err;
}

TEST(GenerateTest, CachedLogitsEqualFullForwardF64) {
  // Same arithmetic in a different order (fused online-softmax prefill vs explicit softmax over
  // the cache; logits of size ~3): observed 1e-15; a wrong position, mask or
  // cache slot changes logits by > 1e-3. 1e-12 separates the two by orders of magnitude.
  EXPECT_LT(cached_vs_full_error(DType::F64), 1e-12);
}

TEST(GenerateTest, CachedLogitsEqualFullForwardF32) {
  // f32 (eps 6e-8) through 2 blocks of width 32, logits of size ~3: observed 8e-7; 1e-5 is far
  // below the > 1e-3 error of any indexing bug.
  EXPECT_LT(cached_vs_full_error(DType::F32), 1e-5);
}

TEST(GenerateTest, LastOnlyReturnsTheLastPosition) {
  GPT model(tiny_config(), {}, DType::F64);
  model.init_weights(2);
  model.eval();
  Tensor ids = Tensor::from_vector(random_ids(6, 64, 9), {1, 6});
  KVCache a = model.new_cache(1, 8), b = model.new_cache(1, 8);
  Tensor all = model.forward_cached(ids, a);
  Tensor last = model.forward_cached(ids, b, /*last_only=*/true);
  ASSERT_EQ(last.shape(), (Shape{1, 1, 64}));
  // Equal up to the LM-head GEMM's summation order, which may differ between M=1 and M=6 rows
  // (gemv vs blocked gemm): a few f64 roundings over C=32 terms, ~1e-16.
  EXPECT_LT(max_abs_diff(last, all.narrow(1, 5, 1)), 1e-13);
  EXPECT_EQ(b.length(), 6);
}

TEST(GenerateTest, GreedyWithCacheEqualsRecomputingEachStep) {
  for (DType dtype : {DType::F64, DType::F32}) {
    GPT model(tiny_config(), {}, dtype);
    model.init_weights(5);
    // Three lengths (one batch per length, two with batch > 1); 14 tokens hits block_size 16.
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t len : {1, 4, 4, 14, 1, 4})
      prompts.push_back(random_ids(len, 64, 100 + len + prompts.size()));
    SamplingOptions o;
    o.temperature = 0.0;
    o.max_new_tokens = 9;
    auto out = generate(model, prompts, o);
    ASSERT_EQ(out.size(), prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      SCOPED_TRACE("prompt " + std::to_string(i) + " dtype " + dtype_name(dtype));
      EXPECT_EQ(out[i].size(), prompts[i].size() == 14 ? 2u : 9u);
      EXPECT_EQ(out[i], greedy_by_recompute(model, prompts[i], 9));
    }
  }
}

TEST(GenerateTest, TopK1EqualsGreedy) {
  GPT model(tiny_config());
  model.init_weights(8);
  std::vector<std::vector<int64_t>> prompts = {random_ids(3, 64, 1), random_ids(3, 64, 2)};
  SamplingOptions greedy;
  greedy.temperature = 0.0;
  greedy.max_new_tokens = 10;
  SamplingOptions k1 = greedy;
  k1.temperature = 1.5;
  k1.top_k = 1;
  k1.seed = 99;
  EXPECT_EQ(generate(model, prompts, k1), generate(model, prompts, greedy));
}

TEST(GenerateTest, SeededSamplingIsReproducibleAndSeedsDiffer) {
  GPT model(tiny_config());
  model.init_weights(4);
  std::vector<std::vector<int64_t>> prompts = {random_ids(2, 64, 1), random_ids(2, 64, 2)};
  SamplingOptions o;
  o.max_new_tokens = 12;
  o.seed = 5;
  auto a = generate(model, prompts, o);
  auto b = generate(model, prompts, o);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a[0].size(), 12u);
  o.seed = 6;
  // 24 draws from distributions over 64 tokens: agreeing everywhere by chance is negligible.
  EXPECT_NE(generate(model, prompts, o), a);
  // Rows of one batch use different draws: two copies of one prompt continue differently.
  auto twins = generate(model, {prompts[0], prompts[0]}, o);
  EXPECT_NE(twins[0], twins[1]);
}

TEST(GenerateTest, TopPKeepsSmallestSetWithMassAtLeastP) {
  // Probabilities 0.1, 0.5, 0.05, 0.2, 0.15 (ids 0..4); sorted: 1, 3, 4, 0, 2.
  const std::vector<double> p = {0.1, 0.5, 0.05, 0.2, 0.15};
  std::vector<double> logits;
  for (double x : p) logits.push_back(std::log(x) + 3.0);  // a shift must not matter
  auto ids_of = [](const std::vector<std::pair<int64_t, double>>& d) {
    std::vector<int64_t> ids;
    for (const auto& e : d) ids.push_back(e.first);
    return ids;
  };
  SamplingOptions o;
  o.top_p = 0.3;  // 0.5 >= 0.3 already
  EXPECT_EQ(ids_of(sampling_distribution(logits, o)), (std::vector<int64_t>{1}));
  o.top_p = 0.8;  // 0.5+0.2 = 0.7 < 0.8 <= 0.85
  auto d = sampling_distribution(logits, o);
  ASSERT_EQ(ids_of(d), (std::vector<int64_t>{1, 3, 4}));
  // Renormalised over the kept mass 0.85; 1e-15: a few roundings of numbers <= 1 in double.
  EXPECT_NEAR(d[0].second, 0.5 / 0.85, 1e-15);
  EXPECT_NEAR(d[1].second, 0.2 / 0.85, 1e-15);
  EXPECT_NEAR(d[2].second, 0.15 / 0.85, 1e-15);
  o.top_p = 0.9;  // 0.85 < 0.9 <= 0.95
  EXPECT_EQ(ids_of(sampling_distribution(logits, o)), (std::vector<int64_t>{1, 3, 4, 0}));
  o.top_p = 1.0;
  EXPECT_EQ(ids_of(sampling_distribution(logits, o)), (std::vector<int64_t>{1, 3, 4, 0, 2}));
  // top-k first, then top-p over the renormalised survivors: {1: 5/7, 3: 2/7}, 5/7 < 0.8.
  o.top_k = 2;
  o.top_p = 0.8;
  d = sampling_distribution(logits, o);
  ASSERT_EQ(ids_of(d), (std::vector<int64_t>{1, 3}));
  EXPECT_NEAR(d[0].second, 5.0 / 7.0, 1e-15);
}

TEST(GenerateTest, TemperatureAndVocabLimitShapeTheDistribution) {
  const std::vector<double> logits = {1.0, 3.0, 2.0, 10.0};
  SamplingOptions o;
  o.temperature = 2.0;
  o.vocab_size = 3;  // id 3 is padding: never drawn however large its logit
  auto d = sampling_distribution(logits, o);
  ASSERT_EQ(d.size(), 3u);
  const double z = std::exp(0.5) + std::exp(1.5) + std::exp(1.0);
  EXPECT_EQ(d[0].first, 1);
  EXPECT_NEAR(d[0].second, std::exp(1.5) / z, 1e-15);  // softmax(logits / T), double roundings
  EXPECT_EQ(d[2].first, 0);
  EXPECT_NEAR(d[2].second, std::exp(0.5) / z, 1e-15);
  o.temperature = 0.0;
  EXPECT_EQ(sample_token(logits, o, 0.5), 1);
}

TEST(GenerateTest, SamplingLogprobIsTheLogOfTheDrawnDistribution) {
  const std::vector<double> logits = {1.0, 3.0, 2.0, 10.0};
  SamplingOptions o;
  o.temperature = 2.0;
  o.vocab_size = 3;  // id 3 (padding) is outside the distribution
  const double z = std::exp(0.5) + std::exp(1.5) + std::exp(1.0);
  // log softmax(logits / T) in double: a few roundings of numbers of size ~1
  EXPECT_NEAR(sampling_logprob(logits, o, 1), 1.5 - std::log(z), 1e-14);
  EXPECT_NEAR(sampling_logprob(logits, o, 0), 0.5 - std::log(z), 1e-14);
  EXPECT_THROW(sampling_logprob(logits, o, 3), ValueError);
  o.top_k = 2;  // ids 1 and 2 renormalised; id 0 cannot be drawn
  EXPECT_NEAR(sampling_logprob(logits, o, 1), 1.5 - std::log(std::exp(1.5) + std::exp(1.0)),
              1e-14);
  EXPECT_EQ(sampling_logprob(logits, o, 0), -std::numeric_limits<double>::infinity());
  o.top_k = 0;
  o.temperature = 0.0;  // greedy: the argmax with probability 1
  EXPECT_EQ(sampling_logprob(logits, o, 1), 0.0);
  EXPECT_EQ(sampling_logprob(logits, o, 2), -std::numeric_limits<double>::infinity());
}

TEST(GenerateTest, SampleTokenIsTheInverseCdf) {
  const std::vector<double> logits = {std::log(0.3), std::log(0.5), std::log(0.2)};
  SamplingOptions o;  // sorted: id 1 (0.5), id 0 (0.3), id 2 (0.2)
  EXPECT_EQ(sample_token(logits, o, 0.0), 1);
  EXPECT_EQ(sample_token(logits, o, 0.49), 1);
  EXPECT_EQ(sample_token(logits, o, 0.51), 0);
  EXPECT_EQ(sample_token(logits, o, 0.79), 0);
  EXPECT_EQ(sample_token(logits, o, 0.81), 2);
  EXPECT_EQ(sample_token(logits, o, 0.999999), 2);
  EXPECT_THROW(sample_token(logits, o, 1.0), ValueError);
}

TEST(GenerateTest, SampleTokenEqualsTheSortedInverseCdfEverywhere) {
  // sample_token draws over the whole vocabulary without sorting it; the spec is the inverse CDF
  // of sampling_distribution (sorted, renormalised). Random logits with ties and -inf entries,
  // random u and u on either side of every CDF boundary (where the two may round differently).
  Generator gen(3);
  SamplingOptions o;
  o.temperature = 0.7;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> logits = Tensor::randn({300}, gen, DType::F64).to_vector<double>();
    for (size_t i = 0; i < 40; ++i) logits[i * 7] = logits[i * 7 + 1];  // ties
    logits[5] = -std::numeric_limits<double>::infinity();
    const auto dist = sampling_distribution(logits, o);
    auto spec = [&](double u) {
      double cum = 0.0;
      for (const auto& [id, p] : dist) {
        cum += p;
        if (u < cum) return id;
      }
      return dist.back().first;
    };
    std::vector<double> us = Tensor::rand({200}, gen, DType::F64).to_vector<double>();
    double cum = 0.0;
    for (size_t i = 0; i + 1 < dist.size(); ++i) {
      cum += dist[i].second;
      us.push_back(std::nextafter(cum, 0.0));
      us.push_back(cum);
    }
    for (double u : us) ASSERT_EQ(sample_token(logits, o, u), spec(u)) << "u " << u;
  }
  std::vector<double> nan_logits(300, 0.0);
  nan_logits[17] = std::nan("");
  EXPECT_THROW(sample_token(nan_logits, o, 0.5), ValueError);
}

TEST(GenerateTest, EosStopsOnlyItsRow) {
  GPT model(tiny_config());
  model.init_weights(6);
  std::vector<std::vector<int64_t>> prompts = {random_ids(3, 64, 1), random_ids(3, 64, 2),
                                               random_ids(3, 64, 3)};
  SamplingOptions o;
  o.temperature = 0.0;
  o.max_new_tokens = 8;
  auto free_run = generate(model, prompts, o);
  o.eos_id = free_run[0][0];  // prompt 0 draws it first
  auto out = generate(model, prompts, o);
  EXPECT_EQ(out[0], (std::vector<int64_t>{*o.eos_id}));
  for (size_t r = 0; r < prompts.size(); ++r) {
    // Each row equals the free run cut just after its first EOS (greedy: same tokens).
    auto it = std::find(free_run[r].begin(), free_run[r].end(), *o.eos_id);
    std::vector<int64_t> want(free_run[r].begin(), it == free_run[r].end() ? it : std::next(it));
    EXPECT_EQ(out[r], want) << "prompt " << r;
  }
}

TEST(GenerateTest, StopsAtBlockSize) {
  GPT model(tiny_config());
  model.init_weights(7);
  SamplingOptions o;
  o.max_new_tokens = 10;
  auto out = generate(model, {random_ids(13, 64, 1), random_ids(16, 64, 2)}, o);
  EXPECT_EQ(out[0].size(), 3u);  // 13 + 3 = block_size 16
  EXPECT_TRUE(out[1].empty());   // already block_size long
  o.max_new_tokens = 0;
  EXPECT_TRUE(generate(model, {random_ids(2, 64, 1)}, o)[0].empty());
}

void expect_value_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected ValueError mentioning " << needle;
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GenerateTest, InvalidOptionsAndPromptsAreValueErrors) {
  GPT model(tiny_config());
  model.init_weights(1);
  const std::vector<std::vector<int64_t>> ok = {{1, 2}};
  auto with = [&](auto set, const std::string& needle) {
    SamplingOptions o;
    set(o);
    expect_value_error([&] { generate(model, ok, o); }, needle);
  };
  with([](SamplingOptions& o) { o.temperature = -0.5; }, "temperature");
  with([](SamplingOptions& o) { o.temperature = std::nan(""); }, "temperature");
  with([](SamplingOptions& o) { o.top_p = 0.0; }, "top_p");
  with([](SamplingOptions& o) { o.top_p = 1.5; }, "top_p");
  with([](SamplingOptions& o) { o.top_k = -1; }, "top_k");
  with([](SamplingOptions& o) { o.max_new_tokens = -3; }, "max_new_tokens");
  with([](SamplingOptions& o) { o.max_batch_rows = -1; }, "max_batch_rows");
  SamplingOptions o;
  expect_value_error([&] { generate(model, {}, o); }, "at least one prompt");
  expect_value_error([&] { generate(model, {{1}, {}}, o); }, "non-empty prompt");
  expect_value_error([&] { generate(model, {random_ids(17, 64, 1)}, o); }, "block_size");
  expect_value_error([&] { generate(model, {{3, 64}}, o); }, "prompt ids in [0, 64)");
}

TEST(GenerateTest, RestoresTrainingModeAndChecksCacheUse) {
  GPTConfig c = tiny_config();
  c.dropout = 0.1;
  GPT model(c);
  model.init_weights(3);
  ASSERT_TRUE(model.is_training());
  SamplingOptions o;
  o.max_new_tokens = 2;
  generate(model, {{1, 2}}, o);
  EXPECT_TRUE(model.is_training());
  KVCache cache = model.new_cache(1, 4);
  expect_value_error(
      [&] {
        model.forward_cached(Tensor::from_vector<int64_t>({1}, {1, 1}), cache);
      },
      "eval mode");
  model.eval();
  model.forward_cached(Tensor::from_vector<int64_t>({1, 2, 3}, {1, 3}), cache);
  expect_value_error(
      [&] {
        model.forward_cached(Tensor::from_vector<int64_t>({1, 2}, {1, 2}), cache);
      },
      "capacity 4");
  expect_value_error([&] { model.new_cache(1, 17); }, "block_size");
}

// ---- the batched engine --------------------------------------------------------------------

// Sampling without a cache, one sequence at a time: the whole sequence through forward() for each
// new token, drawn with the documented key of (request, sample j, token s).
std::vector<int64_t> sample_by_recompute(GPT& model, const GenerationRequest& q, int64_t j,
                                         const SamplingOptions& o) {
  NoGradGuard no_grad;
  std::vector<int64_t> seq = q.prompt;
  const uint64_t stride = q.key_stride > 0 ? q.key_stride : uint64_t(q.num_samples);
  for (int64_t s = 0; s < o.max_new_tokens && int64_t(seq.size()) < model.config().block_size;
       ++s) {
    const int64_t T = int64_t(seq.size());
    std::vector<double> row =
        model.forward(Tensor::from_vector(seq, {1, T})).select(1, T - 1).to_vector<double>();
    const double u = philox::uniform_at(q.seed, uint64_t(s) * stride, q.key_offset + uint64_t(j));
    seq.push_back(sample_token(row, o, u));
    if (o.eos_id && seq.back() == *o.eos_id) break;
  }
  return {seq.begin() + int64_t(q.prompt.size()), seq.end()};
}

// Ragged requests: lengths 1 to 14 (block_size 16, so some rows stop at block_size), a repeated
// prompt in two requests, 1 to 3 samples each, distinct seeds.
std::vector<GenerationRequest> ragged_requests() {
  std::vector<GenerationRequest> q;
  const std::vector<int64_t> lengths = {5, 1, 9, 14, 3, 5, 12};
  for (size_t i = 0; i < lengths.size(); ++i)
    q.push_back({random_ids(lengths[i], 64, 40 + i), int64_t(i % 3) + 1, 1000 + i, 0, 0});
  q[5].prompt = q[0].prompt;
  return q;
}

// Every sample of generate_batch(requests) against sample_by_recompute, and against the same
// engine given that sample alone (batch 1, its key kept through key_stride / key_offset).
void expect_batch_equals_one_at_a_time(GPT& model, const SamplingOptions& o) {
  const std::vector<GenerationRequest> reqs = ragged_requests();
  const auto out = generate_batch(model, reqs, o);
  ASSERT_EQ(out.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(out[i].size(), size_t(reqs[i].num_samples));
    for (int64_t j = 0; j < reqs[i].num_samples; ++j) {
      SCOPED_TRACE("request " + std::to_string(i) + " sample " + std::to_string(j));
      const std::vector<int64_t>& got = out[i][size_t(j)];
      EXPECT_EQ(got, sample_by_recompute(model, reqs[i], j, o));
      GenerationRequest alone = reqs[i];
      alone.num_samples = 1;
      alone.key_stride = uint64_t(reqs[i].num_samples);
      alone.key_offset = uint64_t(j);
      EXPECT_EQ(got, generate_batch(model, {alone}, o)[0][0]);
    }
  }
}

TEST(GenerateTest, GreedyBatchEqualsOneSequenceAtATimeGpt2AndLlama) {
  for (const GPTConfig& c : {tiny_config(), tiny_llama_config()}) {
    for (DType dtype : {DType::F64, DType::F32}) {
      SCOPED_TRACE(std::string(c.position == PositionKind::Rope ? "llama " : "gpt2 ") +
                   dtype_name(dtype));
      GPT model(c, {}, dtype);
      model.init_weights(21);
      SamplingOptions o;
      o.temperature = 0.0;
      o.max_new_tokens = 9;
      expect_batch_equals_one_at_a_time(model, o);
    }
  }
}

TEST(GenerateTest, SampledBatchEqualsOneSequenceAtATimeGpt2AndLlama) {
  for (const GPTConfig& c : {tiny_config(), tiny_llama_config()}) {
    SCOPED_TRACE(c.position == PositionKind::Rope ? "llama" : "gpt2");
    GPT model(c);
    model.init_weights(22);
    SamplingOptions o;
    o.temperature = 1.3;
    o.top_k = 20;
    o.max_new_tokens = 9;
    expect_batch_equals_one_at_a_time(model, o);
  }
}

TEST(GenerateTest, BatchLogprobsAreTheFullForwardLogSoftmaxOfEachDrawnToken) {
  GPT model(tiny_config(), {}, DType::F64);
  model.init_weights(23);
  SamplingOptions o;
  o.temperature = 0.7;
  o.max_new_tokens = 9;
  o.vocab_size = 60;  // the last 4 rows are padding
  const std::vector<GenerationRequest> reqs = ragged_requests();
  SampleLogprobs lp;
  const auto out = generate_batch(model, reqs, o, &lp);
  ASSERT_EQ(lp.size(), reqs.size());
  NoGradGuard no_grad;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(lp[i].size(), out[i].size());
    for (size_t j = 0; j < out[i].size(); ++j) {
      ASSERT_EQ(lp[i][j].size(), out[i][j].size());
      std::vector<int64_t> seq = reqs[i].prompt;
      for (size_t s = 0; s < out[i][j].size(); ++s) {
        const int64_t T = int64_t(seq.size());
        const std::vector<double> row = model.forward(Tensor::from_vector(seq, {1, T}))
                                            .select(1, T - 1)
                                            .to_vector<double>();
        const int64_t tok = out[i][j][s];
        double z = 0.0;
        for (int64_t v = 0; v < o.vocab_size; ++v) z += std::exp(row[size_t(v)] / o.temperature);
        // f64 cached vs full logits differ by ~1e-15 (CachedLogitsEqualFullForwardF64)
        EXPECT_NEAR(lp[i][j][s], row[size_t(tok)] / o.temperature - std::log(z), 1e-12)
            << "request " << i << " sample " << j << " token " << s;
        seq.push_back(tok);
      }
    }
  }
}

TEST(GenerateTest, SampledOutputsDoNotDependOnBatchComposition) {
  GPT model(tiny_llama_config());
  model.init_weights(23);
  SamplingOptions o;
  o.max_new_tokens = 8;
  const std::vector<GenerationRequest> reqs = ragged_requests();
  const auto all = generate_batch(model, reqs, o);
  // Reversed, and split into two batches: every request's samples are the same.
  const std::vector<GenerationRequest> reversed(reqs.rbegin(), reqs.rend());
  const auto rev = generate_batch(model, reversed, o);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(rev[reqs.size() - 1 - i], all[i]);
  const std::vector<GenerationRequest> first(reqs.begin(), reqs.begin() + 3),
      rest(reqs.begin() + 3, reqs.end());
  const auto a = generate_batch(model, first, o), b = generate_batch(model, rest, o);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(i < 3 ? a[i] : b[i - 3], all[i]);
  // Samples of one prompt differ (their own draws), and a seed changes them.
  EXPECT_NE(all[2][0], all[2][1]);
  std::vector<GenerationRequest> other = reqs;
  other[2].seed += 1;
  EXPECT_NE(generate_batch(model, other, o)[2], all[2]);
}

TEST(GenerateTest, BatchRowLimitDoesNotChangeOutputs) {
  // max_batch_rows 1, 2 and 4 split the 13 samples into batches (some requests across two).
  GPT model(tiny_llama_config());
  model.init_weights(27);
  SamplingOptions o;
  o.max_new_tokens = 7;
  const std::vector<GenerationRequest> reqs = ragged_requests();
  const auto whole = generate_batch(model, reqs, o);
  for (int64_t rows : {1, 2, 4}) {
    o.max_batch_rows = rows;
    EXPECT_EQ(generate_batch(model, reqs, o), whole) << "max_batch_rows " << rows;
  }
}

TEST(GenerateTest, FinishedRowsLeavingTheBatchDoNotChangeTheOthers) {
  GPT model(tiny_config());
  model.init_weights(24);
  SamplingOptions o;
  o.temperature = 0.9;
  o.max_new_tokens = 10;
  const std::vector<GenerationRequest> reqs = ragged_requests();
  const auto free_run = generate_batch(model, reqs, o);
  // An EOS id some samples draw early and others never: those leave the batch at different steps.
  o.eos_id = free_run[1][0][2];
  const auto out = generate_batch(model, reqs, o);
  size_t cut = 0, uncut = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    for (size_t j = 0; j < out[i].size(); ++j) {
      const std::vector<int64_t>& f = free_run[i][j];
      auto it = std::find(f.begin(), f.end(), *o.eos_id);
      (it == f.end() ? uncut : cut) += 1;
      EXPECT_EQ(out[i][j], std::vector<int64_t>(f.begin(), it == f.end() ? it : std::next(it)))
          << "request " << i << " sample " << j;
    }
  }
  EXPECT_GT(cut, 0u);
  EXPECT_GT(uncut, 0u);
}

TEST(GenerateTest, GreedyLlamaBatchEqualsRecomputeWithSharedPrompts) {
  // Many samples of few prompts (the RL stage's shape): every greedy sample equals the prompt's
  // greedy continuation, so the copied prefill rows hold the prompt's exact cache.
  GPT model(tiny_llama_config());
  model.init_weights(25);
  SamplingOptions o;
  o.temperature = 0.0;
  o.max_new_tokens = 6;
  const std::vector<GenerationRequest> reqs = {{random_ids(4, 64, 1), 5, 1, 0, 0},
                                               {random_ids(7, 64, 2), 3, 2, 0, 0}};
  const auto out = generate_batch(model, reqs, o);
  for (size_t i = 0; i < reqs.size(); ++i)
    for (const auto& sample : out[i])
      EXPECT_EQ(sample, greedy_by_recompute(model, reqs[i].prompt, 6));
}

TEST(GenerateTest, PaddedCacheLogitsEqualEachRowAlone) {
  for (const GPTConfig& c : {tiny_config(), tiny_llama_config()}) {
    SCOPED_TRACE(c.position == PositionKind::Rope ? "llama" : "gpt2");
    GPT model(c, {}, DType::F64);
    model.init_weights(26);
    model.eval();
    NoGradGuard no_grad;
    // Rows of 3 and 6 tokens, left-padded to 6 with id 0, then 2 decode steps.
    const std::vector<int64_t> a = random_ids(5, 64, 1), b = random_ids(8, 64, 2);
    KVCache cache = model.new_cache(2, 8, {3, 0});
    std::vector<int64_t> ids = {0, 0, 0, a[0], a[1], a[2]};
    ids.insert(ids.end(), b.begin(), b.begin() + 6);
    Tensor got = model.forward_cached(Tensor::from_vector(ids, {2, 6}), cache);  // (2,6,V)
    const Tensor full_a = model.forward(Tensor::from_vector(a, {1, 5}));
    const Tensor full_b = model.forward(Tensor::from_vector(b, {1, 8}));
    // f64 logits of size ~3, the same products summed in another order: ~1e-15; a wrong position,
    // mask or rotation moves them by > 1e-3.
    EXPECT_LT(max_abs_diff(got.select(0, 0).narrow(0, 3, 3), full_a.select(0, 0).narrow(0, 0, 3)),
              1e-12);
    EXPECT_LT(max_abs_diff(got.select(0, 1), full_b.select(0, 0).narrow(0, 0, 6)), 1e-12);
    // Rows swapped (select_rows), one step; then row a dropped, one more step for b.
    cache = cache.select_rows({1, 0});
    EXPECT_EQ(cache.padding(), (std::vector<int64_t>{0, 3}));
    Tensor step = model.forward_cached(Tensor::from_vector<int64_t>({b[6], a[3]}, {2, 1}), cache);
    EXPECT_LT(max_abs_diff(step.select(0, 0), full_b.select(0, 0).narrow(0, 6, 1)), 1e-12);
    EXPECT_LT(max_abs_diff(step.select(0, 1), full_a.select(0, 0).narrow(0, 3, 1)), 1e-12);
    cache = cache.select_rows({0});
    step = model.forward_cached(Tensor::from_vector<int64_t>({b[7]}, {1, 1}), cache);
    EXPECT_LT(max_abs_diff(step.select(0, 0), full_b.select(0, 0).narrow(0, 7, 1)), 1e-12);
  }
}

}  // namespace
}  // namespace loom::models

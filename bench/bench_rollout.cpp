// Rollout throughput: the batched generation engine (models/Generate.h) against generating one
// sample at a time through the same engine (batch 1), in one run, on examples/rlhf's model shape
// (2 layers, 4 heads, 64 wide, vocab 270, random weights): 64 prompts of 4-6 tokens x 4 samples.
// Settings: "rlhf" (block_size 16 as in examples/rlhf/common.pbtxt, 8 new tokens, EOS on) and
// "long" (block_size 48, 32 new tokens, no EOS). Prints one JSON line per setting with tokens/s
// of each path (best of `reps` interleaved runs), the speedup in wall time and in thread CPU time,
// and whether greedy and seeded-sampling outputs are identical between the two paths.
//   OMP_NUM_THREADS=1 build-cpu/bin/bench_rollout [reps]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "core/random/Generator.h"
#include "models/Generate.h"

namespace {

using loom::models::GenerationRequest;
using loom::models::GPT;
using loom::models::SamplingOptions;
using Outputs = std::vector<std::vector<std::vector<int64_t>>>;

constexpr int64_t kPrompts = 64, kSamples = 4;

// 64 prompts of 4 to 6 ids like "3+4=" (digits and operators of a ~270-token vocabulary).
std::vector<GenerationRequest> make_requests() {
  loom::Generator gen(7);
  const std::vector<double> u =
      loom::Tensor::rand({kPrompts * 7}, gen, loom::DType::F64).to_vector<double>();
  std::vector<GenerationRequest> reqs;
  for (int64_t p = 0; p < kPrompts; ++p) {
    const int64_t len = 4 + int64_t(u[size_t(p * 7)] * 3.0);
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < len; ++t) ids.push_back(16 + int64_t(u[size_t(p * 7 + 1 + t)] * 30));
    reqs.push_back({ids, kSamples, 1000 + uint64_t(p), 0, 0});
  }
  return reqs;
}

Outputs batched(GPT& model, const std::vector<GenerationRequest>& reqs, const SamplingOptions& o) {
  return loom::models::generate_batch(model, reqs, o);
}

// Each sample alone (batch 1), with the key it has in the batch, so outputs must match.
Outputs one_at_a_time(GPT& model, const std::vector<GenerationRequest>& reqs,
                      const SamplingOptions& o) {
  Outputs out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    for (int64_t j = 0; j < reqs[i].num_samples; ++j) {
      GenerationRequest alone = reqs[i];
      alone.num_samples = 1;
      alone.key_stride = uint64_t(reqs[i].num_samples);
      alone.key_offset = uint64_t(j);
      out[i].push_back(loom::models::generate_batch(model, {alone}, o)[0][0]);
    }
  }
  return out;
}

int64_t count_tokens(const Outputs& out) {
  int64_t n = 0;
  for (const auto& r : out)
    for (const auto& s : r) n += int64_t(s.size());
  return n;
}

// Wall and thread CPU seconds of one call of f, its outputs in `out`. CPU time is the steadier
// figure on a shared machine (with OMP_NUM_THREADS=1 the thread does all the work).
struct Timing {
  double wall = 1e30, cpu = 1e30;
};

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
void time_once(F f, Outputs& out, Timing& best) {
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_seconds();
  out = f();
  best.cpu = std::min(best.cpu, thread_cpu_seconds() - c0);
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - t0;
  best.wall = std::min(best.wall, wall.count());
}

void run_setting(const char* name, int64_t block_size, int64_t max_new, bool eos, int reps) {
  loom::models::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 64;
  c.vocab_size = 270;
  c.block_size = block_size;
  GPT model(c);
  model.init_weights(1);
  const std::vector<GenerationRequest> reqs = make_requests();
  SamplingOptions o;
  o.max_new_tokens = max_new;
  if (eos) o.eos_id = 0;
  // Interleaved runs, best of each side, so both see the same machine load.
  Outputs fast, slow;
  Timing t_fast, t_slow;
  for (int r = 0; r < reps; ++r) {
    time_once([&] { return batched(model, reqs, o); }, fast, t_fast);
    time_once([&] { return one_at_a_time(model, reqs, o); }, slow, t_slow);
  }
  const bool sampled_identical = fast == slow;
  SamplingOptions g = o;
  g.temperature = 0.0;
  const bool greedy_identical = batched(model, reqs, g) == one_at_a_time(model, reqs, g);
  const double tokens = double(count_tokens(fast));
  std::printf(
      "{\"setting\": \"%s\", \"prompts\": %lld, \"samples_per_prompt\": %lld, \"block_size\": "
      "%lld, \"max_new_tokens\": %lld, \"eos\": %s, \"tokens\": %.0f, \"batched_s\": %.4f, "
      "\"one_at_a_time_s\": %.4f, \"batched_tokens_per_s\": %.0f, "
      "\"one_at_a_time_tokens_per_s\": %.0f, \"speedup\": %.2f, \"speedup_cpu_time\": %.2f, "
      "\"greedy_identical\": %s, \"sampled_identical\": %s}\n",
      name, (long long)kPrompts, (long long)kSamples, (long long)block_size, (long long)max_new,
      eos ? "true" : "false", tokens, t_fast.wall, t_slow.wall, tokens / t_fast.wall,
      tokens / t_slow.wall, t_slow.wall / t_fast.wall, t_slow.cpu / t_fast.cpu,
      greedy_identical ? "true" : "false", sampled_identical ? "true" : "false");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
  run_setting("rlhf", 16, 8, /*eos=*/true, reps);
  run_setting("long", 48, 32, /*eos=*/false, reps);
  return 0;
}

// ZeroAdamW on Fake ranks: shards that cut through parameters, bitwise equality with the
// unsharded AdamW on the rank-mean gradient (what the gradient sync leaves; clipping is its job,
// tests/train/GradSyncTest.cpp), and logical state saved at dp=2 continuing at dp=3.
#include "optim/ZeroAdamW.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/random/Generator.h"
#include "parallel/comm/FakeCommunicator.h"

namespace loom {
namespace {

// 5 + 7 + 3 = 15 elements: at dp=2 the shards are [0, 8) and [8, 16), cutting parameter "b".
std::vector<optim::NamedParam> make_params() {
  Generator gen(3);
  std::vector<optim::NamedParam> ps;
  for (auto [name, n] : {std::pair{"a", 5}, std::pair{"b", 7}, std::pair{"c", 3}})
    ps.emplace_back(name, Tensor::randn({n}, gen).set_requires_grad(true));
  return ps;
}

// Rank r's gradient for parameter i at step s (deterministic, rank dependent).
Tensor grad_of(int rank, size_t i, int step, int64_t n) {
  Generator gen(uint64_t(100 * step + 10 * rank + int(i)));
  return Tensor::randn({n}, gen);
}

optim::AdamWOptions options() {
  optim::AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  return o;
}

std::vector<optim::ParamGroup> groups_of(const std::vector<optim::NamedParam>& ps) {
  return optim::make_decay_groups(ps, 1e-2, 0.1, [](const std::string& n, const Tensor&) {
    return n != "c";  // one decayed and one non-decayed group
  });
}

// The mean over `dp` ranks of grad_of (summed in rank order): what the trainer's gradient sync
// leaves in every rank's .grad before the optimizer step.
void set_mean_grads(const std::vector<optim::NamedParam>& ps, int dp, int step) {
  NoGradGuard g;
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor sum = grad_of(0, i, step, ps[i].second.numel());
    for (int r = 1; r < dp; ++r) sum = sum + grad_of(r, i, step, ps[i].second.numel());
    ps[i].second.set_grad(sum * (1.0 / double(dp)));
  }
}

void reference_step(optim::AdamW& opt, const std::vector<optim::NamedParam>& ps, int dp, int step) {
  set_mean_grads(ps, dp, step);
  opt.step();
}

void zero_step(optim::ZeroAdamW& z, const std::vector<optim::NamedParam>& ps, int dp, int step) {
  set_mean_grads(ps, dp, step);
  z.step();
  z.zero_grad();
}

// Three steps at dp ranks (the mean of their gradients) equal the unsharded AdamW's, bitwise.
void expect_matches_unsharded(int dp, int64_t gather_chunk, int64_t shard_size) {
  auto ref = make_params();
  optim::AdamW opt(groups_of(ref), options());
  for (int s = 0; s < 3; ++s) reference_step(opt, ref, dp, s);
  run_fake_ranks(dp, [&](Communicator& c) {
    auto ps = make_params();
    optim::ZeroAdamW z(groups_of(ps), options(), c, gather_chunk);
    EXPECT_EQ(z.shard_size(), shard_size);
    for (int s = 0; s < 3; ++s) zero_step(z, ps, dp, s);
    for (size_t i = 0; i < ps.size(); ++i)
      EXPECT_EQ(ps[i].second.to_vector<float>(), ref[i].second.to_vector<float>()) << ps[i].first;
  });
}

TEST(ZeroAdamW, MatchesUnshardedAdamWBitwise) {
  expect_matches_unsharded(2, optim::kZeroGatherChunk, 8);
}

// 15 elements over 3 ranks (shards of 5) gathered 2 elements per rank per round: 3 rounds, the
// last one short, and pieces that start and end inside parameters.
TEST(ZeroAdamW, GatherInRoundsMatchesUnshardedAdamWBitwise) {
  expect_matches_unsharded(3, /*gather_chunk=*/2, 5);
}

TEST(ZeroAdamW, StateSavedAtDp2ContinuesAtDp3) {
  std::map<std::string, optim::ParamState> saved;
  std::map<std::string, int> writers;
  std::mutex mu;
  std::vector<Tensor> params_after;
  run_fake_ranks(2, [&](Communicator& c) {
    auto ps = make_params();
    optim::ZeroAdamW z(groups_of(ps), options(), c);
    for (int s = 0; s < 2; ++s) zero_step(z, ps, 2, s);
    auto st = z.export_states();
    // Each parameter's moments meet on the rank whose shard holds its first element; every rank
    // knows every parameter's steps.
    ASSERT_EQ(st.size(), 3u);
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [name, s] : st) {
      EXPECT_EQ(s.step, 2) << name;
      if (s.buffers.empty()) continue;
      EXPECT_EQ(saved.count(name), 0u) << name << " written by two ranks";
      saved[name] = s;
      writers[name] = c.rank();
    }
    if (c.rank() == 0)
      for (auto& [n, p] : ps) params_after.push_back(p.detach().clone());
  });
  // Both ranks write some (every parameter's first element is in one rank's shard).
  std::set<int> ranks;
  for (const auto& [name, r] : writers) ranks.insert(r);
  EXPECT_EQ(ranks.size(), 2u);
  ASSERT_EQ(saved.size(), 3u);
  // The gathered (logical) state equals the unsharded optimizer's after the same 2 steps.
  auto ref2 = make_params();
  optim::AdamW opt2(groups_of(ref2), options());
  for (int s = 0; s < 2; ++s) reference_step(opt2, ref2, 2, s);
  for (const auto& [name, st] : opt2.states()) {
    EXPECT_EQ(saved.at(name).step, st.step);
    for (const auto& [key, buf] : st.buffers)
      EXPECT_EQ(saved.at(name).buffers.at(key).to_vector<float>(), buf.to_vector<float>()) << key;
  }
  // Continue at dp=3 from the saved state: one more step with the mean of 3 ranks' gradients.
  for (int s = 2; s < 3; ++s) reference_step(opt2, ref2, 3, s);
  run_fake_ranks(3, [&](Communicator& c) {
    auto ps = make_params();
    {
      NoGradGuard g;
      for (size_t i = 0; i < ps.size(); ++i) ps[i].second.detach().copy_(params_after[i]);
    }
    optim::ZeroAdamW z(groups_of(ps), options(), c);
    z.import_states(saved, 2);
    zero_step(z, ps, 3, 2);
    for (size_t i = 0; i < ps.size(); ++i)
      EXPECT_EQ(ps[i].second.to_vector<float>(), ref2[i].second.to_vector<float>()) << ps[i].first;
  });
}

}  // namespace
}  // namespace loom

// ZeroAdamW on Fake ranks: shards that cut through parameters, bitwise equality with the
// unsharded AdamW on the rank-mean gradient (Fake reductions are rank-ordered), clipping by the
// global norm, and logical state saved at dp=2 continuing at dp=3.
#include "optim/ZeroAdamW.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/random/Generator.h"
#include "optim/ClipGradNorm.h"
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

// Reference: unsharded AdamW on the mean over `dp` ranks of grad_of (summed in rank order).
void reference_step(optim::AdamW& opt, const std::vector<optim::NamedParam>& ps, int dp, int step,
                    double max_norm) {
  NoGradGuard g;
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor sum = grad_of(0, i, step, ps[i].second.numel());
    for (int r = 1; r < dp; ++r) sum = sum + grad_of(r, i, step, ps[i].second.numel());
    ps[i].second.set_grad(sum * (1.0 / double(dp)));
  }
  if (max_norm > 0) optim::clip_grad_norm(ps, max_norm);
  opt.step();
}

void zero_step(ZeroAdamW& z, const std::vector<optim::NamedParam>& ps, int rank, int step,
               double max_norm) {
  for (size_t i = 0; i < ps.size(); ++i)
    ps[i].second.set_grad(grad_of(rank, i, step, ps[i].second.numel()));
  z.step(max_norm);
  z.zero_grad();
}

TEST(ZeroAdamW, MatchesUnshardedAdamWBitwise) {
  auto ref = make_params();
  optim::AdamW opt(groups_of(ref), options());
  for (int s = 0; s < 3; ++s) reference_step(opt, ref, 2, s, 0.0);
  run_fake_ranks(2, [&](Communicator& c) {
    auto ps = make_params();
    ZeroAdamW z(groups_of(ps), options(), c);
    EXPECT_EQ(z.shard_size(), 8);
    for (int s = 0; s < 3; ++s) zero_step(z, ps, c.rank(), s, 0.0);
    for (size_t i = 0; i < ps.size(); ++i)
      EXPECT_EQ(ps[i].second.to_vector<float>(), ref[i].second.to_vector<float>()) << ps[i].first;
  });
}

TEST(ZeroAdamW, ClipsByTheGlobalNorm) {
  auto ref = make_params();
  optim::AdamW opt(groups_of(ref), options());
  for (int s = 0; s < 3; ++s) reference_step(opt, ref, 2, s, 0.5);
  run_fake_ranks(2, [&](Communicator& c) {
    auto ps = make_params();
    ZeroAdamW z(groups_of(ps), options(), c);
    for (int s = 0; s < 3; ++s) zero_step(z, ps, c.rank(), s, 0.5);
    for (size_t i = 0; i < ps.size(); ++i) {
      std::vector<float> a = ps[i].second.to_vector<float>(), b = ref[i].second.to_vector<float>();
      // The norm sums shards instead of parameters (f64): the clip factor may differ in its last
      // f32 bit, which AdamW's m/sqrt(v) mostly cancels; 1e-6 is a few f32 ulps of values ~1.
      for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-6) << ps[i].first;
    }
  });
}

TEST(ZeroAdamW, StateSavedAtDp2ContinuesAtDp3) {
  std::map<std::string, optim::ParamState> saved;
  std::vector<Tensor> params_after;
  run_fake_ranks(2, [&](Communicator& c) {
    auto ps = make_params();
    ZeroAdamW z(groups_of(ps), options(), c);
    for (int s = 0; s < 2; ++s) zero_step(z, ps, c.rank(), s, 0.0);
    auto st = z.gather_states();
    if (c.rank() == 0) {
      saved = st;
      for (auto& [n, p] : ps) params_after.push_back(p.detach().clone());
    }
  });
  ASSERT_EQ(saved.size(), 3u);
  // The gathered (logical) state equals the unsharded optimizer's after the same 2 steps.
  auto ref2 = make_params();
  optim::AdamW opt2(groups_of(ref2), options());
  for (int s = 0; s < 2; ++s) reference_step(opt2, ref2, 2, s, 0.0);
  for (const auto& [name, st] : opt2.states()) {
    EXPECT_EQ(saved.at(name).step, st.step);
    for (const auto& [key, buf] : st.buffers)
      EXPECT_EQ(saved.at(name).buffers.at(key).to_vector<float>(), buf.to_vector<float>()) << key;
  }
  // Continue at dp=3 from the saved state: one more step with the mean of 3 ranks' gradients.
  for (int s = 2; s < 3; ++s) reference_step(opt2, ref2, 3, s, 0.0);
  run_fake_ranks(3, [&](Communicator& c) {
    auto ps = make_params();
    {
      NoGradGuard g;
      for (size_t i = 0; i < ps.size(); ++i) ps[i].second.detach().copy_(params_after[i]);
    }
    ZeroAdamW z(groups_of(ps), options(), c);
    z.load_states(saved, 2);
    zero_step(z, ps, c.rank(), 2, 0.0);
    for (size_t i = 0; i < ps.size(); ++i)
      EXPECT_EQ(ps[i].second.to_vector<float>(), ref2[i].second.to_vector<float>()) << ps[i].first;
  });
}

}  // namespace
}  // namespace loom

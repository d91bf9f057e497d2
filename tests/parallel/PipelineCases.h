// Shared pieces of the pipeline-parallel tests (TESTPLAN R-3), used under the Fake communicator
// (PipelineTest.cpp, ranks as threads) and under MPI (pipeline_mpi_test.cpp): a tiny GPT, fixed
// micro-batches, the single-process reference (gradient accumulation over the same micro-batches,
// each loss scaled by 1/M) and the pipelined run of one stage, both stepping the same optimizer.
// Untied models run in f32 and must match bitwise. Tied models are compared at step 1 in f32
// and over 20 steps in f64 (R-5's f64 bound): the tied table's two-part gradient sum
// changes the summation order, and 20 steps of SGD with momentum amplify an f32 rounding
// difference chaotically (a property of the optimisation, not of the pipeline), while in f64 the
// same amplification of 1e-16 stays far below 1e-10.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/ops/Elementwise.h"
#include "models/GPT.h"
#include "optim/AdamW.h"
#include "optim/SGD.h"
#include "parallel/comm/Communicator.h"
#include "parallel/pipeline/Schedule.h"
#include "parallel/pipeline/TiedGradSync.h"

namespace loom::pipeline::test {

// Fake-rank world options: TESTPLAN's 60 s deadline for every collective in a multi-rank test.
inline CommOptions fake_options(const char* name) {
  CommOptions o;
  o.name = name;
  o.timeout_s = 60.0;
  return o;
}

// Rank threads run with one OpenMP thread each, as MPI ranks do (OMP_NUM_THREADS=1). NB: CPU
// kernels are not bitwise independent of the OpenMP thread count, so single-process references
// compared bitwise must run under it too.
class OneOmpThread {
 public:
  OneOmpThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneOmpThread() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

constexpr uint64_t kInitSeed = 1234;
constexpr int64_t kMicroBatch = 2, kSeqLen = 16;
constexpr int kSteps = 20;  // optimizer steps per comparison (TESTPLAN R-3: 20)

// 4 layers, vocab 64, T 16, width C (32 or 64), no dropout.
inline models::GPTConfig tiny_config(bool tied, int64_t C) {
  models::GPTConfig c;
  c.n_layer = 4;
  c.n_head = 4;
  c.n_embd = C;
  c.vocab_size = 64;
  c.block_size = kSeqLen;
  c.dropout = 0.0;
  c.tie_embeddings = tied;
  return c;
}

// M micro-batches of (2,16) random token ids and targets in [0, V); a few targets ignored.
inline std::vector<MicroBatch> make_micro_batches(int64_t M, int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> tok(0, V - 1);
  std::vector<MicroBatch> out;
  for (int64_t m = 0; m < M; ++m) {
    std::vector<int64_t> ids(size_t(kMicroBatch * kSeqLen)), tg(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = tok(rng);
      tg[i] = (i % 13 == 5) ? -100 : tok(rng);
    }
    out.push_back({Tensor::from_vector(ids, {kMicroBatch, kSeqLen}),
                   Tensor::from_vector(tg, {kMicroBatch, kSeqLen}), -1, {}});
  }
  return out;
}

struct RunResult {
  std::vector<double> losses;            // one per step
  std::map<std::string, Tensor> grads;   // after step 1's backward, before its update
  std::map<std::string, Tensor> params;  // after the last step
  std::vector<int64_t> max_live;         // per step (pipelined runs only)
};

// Untied runs step AdamW (they are bitwise equal, so any optimizer must agree). Tied runs step
// SGD with momentum. NB: the key third of attn.qkv.bias has an analytically zero gradient
// (softmax is shift-invariant along the keys), so its float gradient is rounding noise; AdamW
// divides by sqrt(v) and turns that noise into lr-sized steps, so two summation orders of the
// tied gradient give unrelated k-bias values after one step (measured: rel 1e-4), which says
// nothing about the pipeline. SGD keeps a gradient difference of rel 1e-7 a difference of 1e-7.
inline std::unique_ptr<optim::Optimizer> make_optimizer(const std::vector<nn::NamedTensor>& p,
                                                        bool tied) {
  if (tied) return std::make_unique<optim::SGD>(p, optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  return std::make_unique<optim::AdamW>(p, optim::AdamWOptions{.lr = 1e-2, .weight_decay = 0.1});
}

inline void snapshot(const nn::Module& m, std::map<std::string, Tensor>& out, bool grads) {
  for (const auto& [name, p] : m.named_parameters()) out[name] = (grads ? p.grad() : p).clone();
}

// One process, gradient accumulation over all micro-batches.
inline RunResult run_reference(const models::GPTConfig& cfg, const std::vector<MicroBatch>& mbs,
                               int steps, DType dt = DType::F32) {
  models::GPT model(cfg, {}, dt);
  model.init_weights(kInitSeed);
  auto opt = make_optimizer(model.named_parameters(), cfg.tie_embeddings);
  RunResult r;
  const double scale = 1.0 / double(mbs.size());
  for (int s = 0; s < steps; ++s) {
    model.zero_grad();
    double loss = 0.0;
    for (const MicroBatch& mb : mbs) {
      Tensor l = model.loss(mb.ids, mb.targets) * scale;
      loss += l.item();
      l.backward();
    }
    r.losses.push_back(loss);
    if (s == 0) snapshot(model, r.grads, true);
    opt->step();
  }
  snapshot(model, r.params, false);
  return r;
}

// This rank's stage (stage = pp.rank()) of the same model, driven by `kind`.
inline RunResult run_pipelined(Communicator& pp, const models::GPTConfig& cfg,
                               const std::vector<MicroBatch>& mbs, ScheduleKind kind, int steps,
                               DType dt = DType::F32) {
  models::GPT stage(cfg, {nullptr, &pp}, dt);  // the model restricted to this stage's layers
  stage.init_weights(kInitSeed);
  TiedGradSync tied(pp);
  PipelineP2P p2p(pp, stage.activation_shape(kMicroBatch, kSeqLen), dt);
  auto opt = make_optimizer(stage.named_parameters(), cfg.tie_embeddings);
  RunResult r;
  for (int s = 0; s < steps; ++s) {
    stage.zero_grad();
    PipelineResult pr = run_pipeline(kind, stage, p2p, mbs);
    if (cfg.tie_embeddings) tied.all_reduce(stage.tied_weight());
    r.losses.push_back(pr.loss);
    r.max_live.push_back(pr.max_live_micro_batches);
    if (s == 0) snapshot(stage, r.grads, true);
    opt->step();
  }
  snapshot(stage, r.params, false);
  return r;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.nbytes()) == 0;
}

// ||a - b|| / ||b|| in f64.
inline double rel_error(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to(DType::F64).contiguous().to_vector<double>();
  std::vector<double> y = b.to(DType::F64).contiguous().to_vector<double>();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num) / std::sqrt(den);
}

// Tolerances for the tied case. f32 (TESTPLAN R-3): the tied-gradient all-reduce sums the
// embedding part and the head part in a different order than the single process does. f64
// (TESTPLAN R-5): loss rel <= 1e-10 per step; the same bound for the final parameters.
inline double tied_rel(DType dt) { return dt == DType::F64 ? 1e-10 : 1e-6; }

// Untied: every loss, step-1 grad and final param bitwise equal. Tied: step-1 loss and every
// step-1 grad except wte.weight bitwise; wte.weight grad, later losses and final params within
// tied_rel (f32 tied runs are compared at step 1 only, see the file comment).
inline void expect_matches(const RunResult& pipe, const RunResult& ref, bool tied, int stage,
                           DType dt = DType::F32) {
  SCOPED_TRACE(testing::Message() << "stage " << stage << " " << dtype_name(dt));
  const double rel = tied_rel(dt);
  ASSERT_EQ(pipe.losses.size(), ref.losses.size());
  for (size_t s = 0; s < ref.losses.size(); ++s) {
    if (!tied || s == 0) {
      EXPECT_EQ(pipe.losses[s], ref.losses[s]) << "step " << s + 1;
    } else {
      EXPECT_LE(std::abs(pipe.losses[s] - ref.losses[s]), rel * std::abs(ref.losses[s]))
          << "step " << s + 1;
    }
  }
  for (const auto& [name, g] : pipe.grads) {
    ASSERT_TRUE(ref.grads.count(name)) << name;
    if (tied && name == "wte.weight") {
      EXPECT_LE(rel_error(g, ref.grads.at(name)), rel) << name;
    } else {
      EXPECT_TRUE(bitwise_equal(g, ref.grads.at(name))) << "grad " << name;
    }
  }
  for (const auto& [name, p] : pipe.params) {
    if (tied) {
      EXPECT_LE(rel_error(p, ref.params.at(name)), rel) << name;
    } else {
      EXPECT_TRUE(bitwise_equal(p, ref.params.at(name))) << "param " << name;
    }
  }
}

// The activation-memory property: GPipe holds all M micro-batches, 1F1B at most pp - stage.
inline void expect_live_bound(const RunResult& pipe, ScheduleKind kind, int stage, int pp,
                              int64_t M) {
  const int64_t want = kind == ScheduleKind::GPipe ? M : std::min<int64_t>(M, pp - stage);
  for (int64_t live : pipe.max_live) {
    EXPECT_EQ(live, want) << "stage " << stage;
  }
  if (kind == ScheduleKind::OneFOneB) {
    for (int64_t live : pipe.max_live) EXPECT_LE(live, pp) << "stage " << stage;
  }
}

}  // namespace loom::pipeline::test

// The one GPT (models/GPT.h) as one rank of a TP x PP layout, under the Fake communicator, ranks as
// threads: for (tp, pp) in {(1,1),(2,1),(4,1),(1,2),(2,2)}, f64 and f32, tied and untied, GPipe
// and 1F1B with M = 4, every rank allocates and initialises only its pieces, and those pieces
// equal the single process's initial weights cut by their ShardSpecs bitwise (keyed init); the
// pipelined loss, every piece's gradient (tied wte after TiedGradSync), the TP x PP gradient norm
// (each logical element counted once: the owner flags) and run_pipeline_eval match the single
// process accumulating the same micro-batches (also without biases). Also keyed dropout: masks
// independent of the stage split and the schedule, equal to the single process's outside TP
// regions; activation recomputation bitwise equal to none under TP x PP.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <mutex>
#include <thread>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "parallel/ProcessGroups.h"
#include "parallel/comm/FakeCommunicator.h"
#include "models/GPT.h"
#include "optim/ClipGradNorm.h"
#include "parallel/pipeline/Schedule.h"
#include "parallel/pipeline/TiedGradSync.h"
#include "tests/parallel/PipelineCases.h"
#include "tests/parallel/TensorParallelCases.h"

namespace loom::pipeline {
namespace {

using loom::test::rel_frob;
using loom::test::tp_tolerance;
using test::fake_options;
using test::OneOmpThread;

constexpr uint64_t kSeed = 1234;
constexpr int64_t kM = 4;  // micro-batches (of test::kMicroBatch x test::kSeqLen tokens)

// 4 layers, 4 heads, C 32, T 16, vocab 64 (a multiple of every tested TP size, so the full
// models::GPT reference needs no padding).
models::GPTConfig tiny_config(bool tied) { return test::tiny_config(tied, 32); }


// Runs fn(world communicator of rank r) on n threads; a rank's exception becomes a test failure.
void run_world(int n, const std::function<void(std::shared_ptr<Communicator>)>& fn) {
  auto comms = FakeCommunicator::create_world(n, fake_options("world"));
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        OneOmpThread one;
        fn(comms[size_t(r)]);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r)
    EXPECT_TRUE(errors[size_t(r)].empty()) << "rank " << r << ": " << errors[size_t(r)];
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::abs(b); }

// The single process: gradient accumulation over the micro-batches, each loss scaled by 1/M.
struct Reference {
  double loss = 0.0;       // sum of float(loss_m / M), as PipelineResult::loss
  double eval_loss = 0.0;  // mean of the micro-batch losses without autograd
  double grad_norm = 0.0;
  std::map<std::string, Tensor> init, grads;
  std::map<std::string, int64_t> numel;
};

Reference run_reference(const models::GPTConfig& cfg, DType dt,
                        const std::vector<MicroBatch>& mbs) {
  OneOmpThread one;
  models::GPT model(cfg, {}, dt);
  model.init_weights(kSeed);
  Reference ref;
  for (const auto& [name, p] : model.named_parameters()) ref.init[name] = p.detach().clone();
  for (const MicroBatch& mb : mbs) {
    Tensor l = model.loss(mb.ids, mb.targets) * (1.0 / double(mbs.size()));
    ref.loss += l.item();
    l.backward();
  }
  double sq = 0.0;
  for (const auto& [name, p] : model.named_parameters()) {
    ref.grads[name] = p.grad().clone();
    ref.numel[name] = p.numel();
    for (double g : p.grad().to_vector<double>()) sq += g * g;
  }
  ref.grad_norm = std::sqrt(sq);
  NoGradGuard no_grad;
  for (const MicroBatch& mb : mbs) ref.eval_loss += model.loss(mb.ids, mb.targets).item();
  ref.eval_loss /= double(mbs.size());
  return ref;
}

// Owner numel per name, summed over every rank of one layout (must equal the logical numel).
struct Coverage {
  std::mutex mu;
  std::map<std::string, int64_t> owned;
};

struct Case {
  int tp, pp;
  DType dt;
  bool tied;
  ScheduleKind kind;
};

std::string describe(const Case& c) {
  return detail::str_cat("tp=", c.tp, " pp=", c.pp, " ", dtype_name(c.dt),
                         c.tied ? " tied " : " untied ", schedule_name(c.kind));
}

// One rank of a layout: init, train-step backward, compare, then evaluate.
void check_rank(std::shared_ptr<Communicator> world, const Case& c, const models::GPTConfig& cfg,
                const std::vector<MicroBatch>& mbs, const Reference& ref, Coverage& cov) {
  SCOPED_TRACE(describe(c) + " rank " + std::to_string(world->rank()));
  const double tol = tp_tolerance(c.dt);
  ProcessGrid grid(world, c.tp, c.pp, 1);
  models::GPT m(cfg, {&grid.tp_group(), &grid.pp_group()}, c.dt);
  m.init_weights(kSeed);
  const std::vector<nn::Parameter> pieces = m.parameter_list();
  int64_t held = 0;
  for (const nn::Parameter& p : pieces) {
    held += p.tensor.numel();
    // Keyed init: this rank's piece is exactly the single process's tensor cut by its spec.
    EXPECT_TRUE(p.tensor.to_vector<double>() ==
                extract_shard(ref.init.at(p.name), p.meta.spec).to_vector<double>())
        << "initial " << p.name << " " << p.meta.spec.str();
  }
  EXPECT_EQ(models::GPT::local_parameters(cfg, c.tp, grid.pp_rank(), c.pp), held);
  PipelineP2P p2p(grid.pp_group(), m.activation_shape(test::kMicroBatch, test::kSeqLen), c.dt);
  TiedGradSync tied(grid.pp_group());

  PipelineResult r = run_pipeline(c.kind, m, p2p, mbs);
  if (cfg.tie_embeddings) tied.all_reduce(m.tied_weight());
  EXPECT_LE(rel_diff(r.loss, ref.loss), tol) << r.loss << " vs " << ref.loss;
  std::vector<Tensor> owned;
  for (const nn::Parameter& p : pieces) {
    ASSERT_TRUE(ref.grads.count(p.name)) << p.name;
    ASSERT_TRUE(p.tensor.grad().defined()) << p.name;
    const Tensor want = extract_shard(ref.grads.at(p.name), p.meta.spec);
    EXPECT_EQ(p.tensor.grad().shape(), want.shape()) << p.name;
    EXPECT_LE(rel_frob(p.tensor.grad(), want), tol) << p.name << " " << p.meta.spec.str();
    if (p.meta.owner) {
      owned.push_back(p.tensor);
      std::lock_guard<std::mutex> lock(cov.mu);
      cov.owned[p.name] += p.tensor.numel();
    }
  }
  // The replica's norm: owners' squares summed over the TP x PP ranks (GradSync's rule).
  Tensor sq = Tensor::full({1}, optim::grad_sq_sum(owned), DType::F64);
  grid.mp_group().all_reduce(sq);
  const double norm = std::sqrt(sq.item());
  EXPECT_LE(rel_diff(norm, ref.grad_norm), tol) << norm << " vs " << ref.grad_norm;

  m.zero_grad();
  const double eval = run_pipeline_eval(m, p2p, mbs);
  EXPECT_LE(rel_diff(eval, ref.eval_loss), tol) << eval << " vs " << ref.eval_loss;
  for (const nn::Parameter& p : pieces)
    EXPECT_FALSE(p.tensor.grad().defined()) << "eval wrote a gradient into " << p.name;
}

// All ranks of one layout against `ref`; then every logical element has exactly one owner.
void check_case(const Case& c, const models::GPTConfig& cfg, const std::vector<MicroBatch>& mbs,
                const Reference& ref) {
  Coverage cov;
  run_world(c.tp * c.pp, [&](std::shared_ptr<Communicator> w) {
    check_rank(std::move(w), c, cfg, mbs, ref, cov);
  });
  SCOPED_TRACE(describe(c));
  EXPECT_EQ(cov.owned, ref.numel);
}

void check_layouts(DType dt) {
  for (bool tied : {false, true}) {
    const models::GPTConfig cfg = tiny_config(tied);
    const auto mbs = test::make_micro_batches(kM, cfg.vocab_size, 42);
    const Reference ref = run_reference(cfg, dt, mbs);
    for (auto [tp, pp] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {4, 1}, {1, 2}, {2, 2}}) {
      for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
        check_case(Case{tp, pp, dt, tied, kind}, cfg, mbs, ref);
    }
  }
}

TEST(GptLayoutsTest, MatchesSingleProcessGptF64) { check_layouts(DType::F64); }

TEST(GptLayoutsTest, MatchesSingleProcessGptF32) { check_layouts(DType::F32); }

TEST(GptLayoutsTest, MatchesSingleProcessGptWithoutBiases) {
  for (bool tied : {false, true}) {
    models::GPTConfig cfg = tiny_config(tied);
    cfg.bias = false;
    const auto mbs = test::make_micro_batches(kM, cfg.vocab_size, 43);
    const Reference ref = run_reference(cfg, DType::F64, mbs);
    check_case(Case{2, 2, DType::F64, tied, ScheduleKind::OneFOneB}, cfg, mbs, ref);
  }
}

// Keyed dropout at TP 2 in one stage: the same (step, micro-batch) redraws the same masks,
// another micro-batch draws others, and eval mode is the single process's eval loss.
TEST(GptLayoutsTest, KeyedDropoutAtTp2IsReproducibleAndOffInEval) {
  models::GPTConfig cfg = tiny_config(true);
  cfg.dropout = 0.1;
  auto mbs = test::make_micro_batches(2, cfg.vocab_size, 44);
  mbs[0].index = 0;
  mbs[1] = mbs[0];
  mbs[1].index = 1;
  double ref_eval = 0.0;
  {
    models::GPT full(cfg, {}, DType::F64);
    full.init_weights(kSeed);
    full.eval();
    ref_eval = full.loss(mbs[0].ids, mbs[0].targets).item();
  }
  run_world(2, [&](std::shared_ptr<Communicator> w) {
    models::GPT m(cfg, {w.get(), nullptr}, DType::F64);
    m.init_weights(kSeed);
    m.set_step(5);
    const double a = m.forward(Tensor(), mbs[0]).item();
    EXPECT_EQ(m.forward(Tensor(), mbs[0]).item(), a) << "masks not reproducible from the key";
    EXPECT_NE(m.forward(Tensor(), mbs[1]).item(), a) << "another micro-batch drew the same masks";
    m.eval();
    const double e = m.forward(Tensor(), mbs[0]).item();
    EXPECT_NE(a, e) << "training mode dropped nothing";
    EXPECT_LE(rel_diff(e, ref_eval), tp_tolerance(DType::F64)) << e << " vs " << ref_eval;
  });
}

// Keyed dropout (micro-batches with their index): masks depend on (step, index, layer) only, so
// a TP=2 x PP=2 pipeline computes what TP=2 in one stage computes, under either schedule, and
// another step draws other masks.
struct DropoutRun {
  std::vector<double> loss;                 // rank 0's PipelineResult::loss
  std::map<std::string, Tensor> tp0_grads;  // the gradients of TP rank 0's pieces, by name
};

void keyed_dropout_rank(std::shared_ptr<Communicator> w, int pp, ScheduleKind kind, int64_t step,
                        const models::GPTConfig& cfg, const std::vector<MicroBatch>& mbs,
                        DropoutRun& out, std::mutex& mu,
                        models::Recompute recompute = models::Recompute::None) {
  ProcessGrid grid(w, 2, pp, 1);
  models::GPT m(cfg, {&grid.tp_group(), &grid.pp_group()}, DType::F64);
  m.init_weights(kSeed);
  m.set_step(step);
  m.set_recompute(recompute);
  PipelineP2P p2p(grid.pp_group(), m.activation_shape(test::kMicroBatch, test::kSeqLen),
                  DType::F64);
  PipelineResult r = run_pipeline(kind, m, p2p, mbs);
  TiedGradSync(grid.pp_group()).all_reduce(m.tied_weight());
  std::lock_guard<std::mutex> lock(mu);
  if (w->rank() == 0) out.loss.push_back(r.loss);
  if (grid.tp_rank() == 0)
    for (const nn::Parameter& p : m.parameter_list()) out.tp0_grads[p.name] = p.tensor.grad().clone();
}

TEST(GptLayoutsTest, KeyedDropoutIsIndependentOfStagesAndSchedule) {
  models::GPTConfig cfg = tiny_config(true);
  cfg.dropout = 0.1;
  auto mbs = test::make_micro_batches(kM, cfg.vocab_size, 45);
  for (size_t i = 0; i < mbs.size(); ++i) mbs[i].index = int64_t(i);
  std::mutex mu;
  DropoutRun one, gpipe, onef, other_step;
  auto run = [&](int pp, ScheduleKind kind, int64_t step, DropoutRun& out) {
    run_world(2 * pp, [&](auto w) { keyed_dropout_rank(w, pp, kind, step, cfg, mbs, out, mu); });
  };
  run(1, ScheduleKind::OneFOneB, 3, one);
  run(2, ScheduleKind::GPipe, 3, gpipe);
  run(2, ScheduleKind::OneFOneB, 3, onef);
  run(1, ScheduleKind::OneFOneB, 4, other_step);
  ASSERT_EQ(one.loss.size(), 1u);
  // Same masks, same summation orders up to the pipeline's hand-off: f64 agreement (TESTPLAN R-2).
  EXPECT_LE(rel_diff(gpipe.loss[0], one.loss[0]), 1e-12);
  EXPECT_EQ(onef.loss[0], gpipe.loss[0]);  // the schedule changes nothing
  EXPECT_NE(other_step.loss[0], one.loss[0]) << "step 4 drew step 3's masks";
  ASSERT_EQ(gpipe.tp0_grads.size(), one.tp0_grads.size());
  for (const auto& [name, g] : one.tp0_grads)
    EXPECT_LE(rel_frob(gpipe.tp0_grads.at(name), g), tp_tolerance(DType::F64)) << name;

  // Activation recomputation under TP=2 x PP=2 with dropout: bitwise the run without it.
  for (models::Recompute mode : {models::Recompute::Selective, models::Recompute::Full}) {
    DropoutRun redone;
    run_world(4, [&](auto w) {
      keyed_dropout_rank(w, 2, ScheduleKind::OneFOneB, 3, cfg, mbs, redone, mu, mode);
    });
    EXPECT_EQ(redone.loss, onef.loss);
    for (const auto& [name, g] : onef.tp0_grads)
      EXPECT_EQ(redone.tp0_grads.at(name).to_vector<double>(), g.to_vector<double>()) << name;
  }
}

}  // namespace
}  // namespace loom::pipeline

// Pipeline parallelism under the Fake communicator (ranks as threads), TESTPLAN R-3 in spirit:
// GPipe and 1F1B at pp 1-4 with M = 4 and 8 micro-batches against one process accumulating the
// same micro-batches: untied (AdamW, f32, 20 steps) bitwise; tied (SGD) at step 1 in f32 (rel <=
// 1e-6) and over 20 steps in f64 (rel <= 1e-10), with both tied copies bitwise equal; the
// activation-memory bound of 1F1B; layer split; P2P errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "parallel/comm/FakeCommunicator.h"
#include "tests/parallel/PipelineCases.h"

namespace loom::pipeline {
namespace {

using test::fake_options;
using test::OneOmpThread;
using test::RunResult;



std::vector<RunResult> run_all_stages(int pp, const models::GPTConfig& cfg,
                                      const std::vector<MicroBatch>& mbs, ScheduleKind kind,
                                      int steps, DType dt = DType::F32) {
  std::vector<RunResult> out(static_cast<size_t>(pp));
  run_fake_ranks(
      pp,
      [&](Communicator& c) {
        // One OpenMP thread per rank thread, as MPI ranks run with OMP_NUM_THREADS=1 (pp teams
        // of spinning threads on 2 cores made this test 15x slower).
        OneOmpThread one;
        out[size_t(c.rank())] = test::run_pipelined(c, cfg, mbs, kind, steps, dt);
      },
      fake_options("pp"));
  return out;
}

void check_case(int pp, int64_t M, ScheduleKind kind, bool tied, int64_t C) {
  SCOPED_TRACE(testing::Message() << "pp=" << pp << " M=" << M << " " << schedule_name(kind)
                                  << (tied ? " tied" : " untied") << " C=" << C);
  const models::GPTConfig cfg = test::tiny_config(tied, C);
  const auto mbs = test::make_micro_batches(M, cfg.vocab_size, 42);
  // f32 over all steps untied; tied: f32 for step 1, then f64 for all steps (PipelineCases.h).
  const int steps = tied ? 1 : test::kSteps;
  RunResult ref, ref64;
  {
    OneOmpThread one;
    ref = test::run_reference(cfg, mbs, steps);
    if (tied) ref64 = test::run_reference(cfg, mbs, test::kSteps, DType::F64);
  }
  std::vector<RunResult> stages = run_all_stages(pp, cfg, mbs, kind, steps);
  if (tied) {
    std::vector<RunResult> stages64 = run_all_stages(pp, cfg, mbs, kind, test::kSteps, DType::F64);
    for (int s = 0; s < pp; ++s) test::expect_matches(stages64[size_t(s)], ref64, tied, s, DType::F64);
  }
  std::set<std::string> covered;
  for (int s = 0; s < pp; ++s) {
    test::expect_matches(stages[size_t(s)], ref, tied, s);
    test::expect_live_bound(stages[size_t(s)], kind, s, pp, M);
    for (const auto& kv : stages[size_t(s)].params) covered.insert(kv.first);
  }
  EXPECT_EQ(covered.size(), ref.params.size()) << "every parameter lives on some stage";
  if (tied && pp > 1) {
    EXPECT_TRUE(test::bitwise_equal(stages[0].params.at("wte.weight"),
                                    stages[size_t(pp - 1)].params.at("wte.weight")))
        << "the first and last stage's copies of the tied weight diverged";
  }
}

TEST(PipelineTest, UntiedMatchesGradientAccumulationBitwise) {
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    for (int pp : {1, 2, 3, 4})
      for (int64_t M : {4, 8}) check_case(pp, M, kind, /*tied=*/false, 32);
}

TEST(PipelineTest, TiedMatchesGradientAccumulationAndCopiesStayEqual) {
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    for (int pp : {2, 4}) check_case(pp, 8, kind, /*tied=*/true, 64);
}

TEST(PipelineTest, FewerMicroBatchesThanStages) {
  // M < pp: 1F1B's warm-up is cut short to M forwards, and the result is still exact.
  check_case(4, 2, ScheduleKind::OneFOneB, /*tied=*/false, 32);
  check_case(4, 1, ScheduleKind::GPipe, /*tied=*/false, 32);
}

// A GPT stage that logs "F<m>" per forward; the hook logs "H<m>" and a post-accumulate-grad hook
// on one parameter logs "G" once per backward, so the log shows each hook's place in the schedule.
class LoggingStage : public PipelineStage {
 public:
  LoggingStage(models::GPT& inner, const std::vector<MicroBatch>& mbs, std::vector<std::string>& log)
      : inner_(inner), mbs_(mbs), log_(log) {}
  Tensor forward(const Tensor& x, const MicroBatch& mb) override {
    log_.push_back("F" + std::to_string(&mb - mbs_.data()));  // the schedule passes mbs_[m]
    return inner_.forward(x, mb);
  }

 private:
  models::GPT& inner_;
  const std::vector<MicroBatch>& mbs_;
  std::vector<std::string>& log_;
};

std::vector<std::vector<std::string>> hook_logs(ScheduleKind kind, int pp, int64_t M) {
  const models::GPTConfig cfg = test::tiny_config(false, 32);
  const auto mbs = test::make_micro_batches(M, cfg.vocab_size, 7);
  std::vector<std::vector<std::string>> logs(static_cast<size_t>(pp));
  run_fake_ranks(
      pp,
      [&](Communicator& c) {
        OneOmpThread one;
        std::vector<std::string>& log = logs[size_t(c.rank())];
        models::GPT stage(cfg, {nullptr, &c});
        stage.init_weights(test::kInitSeed);
        const Tensor w = stage.named_parameters().front().second;
        const int id = w.register_post_accumulate_grad_hook([&](const Tensor&) {
          log.push_back("G");
        });
        LoggingStage logging(stage, mbs, log);
        PipelineP2P p2p(c, stage.activation_shape(test::kMicroBatch, test::kSeqLen), DType::F32);
        PipelineHooks hooks;
        hooks.before_backward = [&](int64_t mb) { log.push_back("H" + std::to_string(mb)); };
        run_pipeline(kind, logging, p2p, mbs, hooks);
        w.remove_hook(id);
      },
      fake_options("pp"));
  return logs;
}

TEST(PipelineTest, BeforeBackwardHookRunsOncePerMicroBatchRightBeforeItsBackward) {
  using Log = std::vector<std::string>;
  // GPipe: all forwards, then each backward preceded by its hook, on every stage.
  const Log gpipe = {"F0", "F1", "F2", "H0", "G", "H1", "G", "H2", "G"};
  auto logs = hook_logs(ScheduleKind::GPipe, 2, 3);
  EXPECT_EQ(logs[0], gpipe);
  EXPECT_EQ(logs[1], gpipe);
  // 1F1B with pp=2, M=3: stage 0 warms up with one forward, the last stage with none.
  logs = hook_logs(ScheduleKind::OneFOneB, 2, 3);
  EXPECT_EQ(logs[0], Log({"F0", "F1", "H0", "G", "F2", "H1", "G", "H2", "G"}));
  EXPECT_EQ(logs[1], Log({"F0", "H0", "G", "F1", "H1", "G", "F2", "H2", "G"}));
}

TEST(PipelineTest, WarmupForwards) {
  EXPECT_EQ(warmup_forwards(0, 4, 8), 3);
  EXPECT_EQ(warmup_forwards(3, 4, 8), 0);
  EXPECT_EQ(warmup_forwards(0, 4, 2), 2);
}

TEST(PipelineTest, StageLayersSplitEvenlyFirstStagesLonger) {
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(models::stage_layers(4, 2, 1), P(2, 4));
  EXPECT_EQ(models::stage_layers(4, 3, 0), P(0, 2));
  EXPECT_EQ(models::stage_layers(4, 3, 1), P(2, 3));
  EXPECT_EQ(models::stage_layers(4, 3, 2), P(3, 4));
  EXPECT_EQ(models::stage_layers(12, 5, 4), P(10, 12));
  EXPECT_THROW(models::stage_layers(4, 5, 0), ValueError);
  EXPECT_THROW(models::stage_layers(4, 2, 2), ValueError);
}

TEST(PipelineTest, SendChecksTheActivationShape) {
  run_fake_ranks(2, [](Communicator& c) {
    PipelineP2P p2p(c, {2, 16, 32}, DType::F32);
    if (p2p.is_first()) {
      EXPECT_THROW(p2p.send_forward(Tensor::zeros({2, 16, 31}), 0), ValueError);
      EXPECT_THROW(p2p.send_backward(Tensor::zeros({2, 16, 32}), 0), ValueError);
    } else {
      EXPECT_THROW(p2p.send_forward(Tensor::zeros({2, 16, 32}), 0), ValueError);
    }
  });
}

TEST(PipelineTest, MissingActivationTimesOutNamingTheSender) {
  CommOptions o = fake_options("pp");
  o.timeout_s = 0.3;  // short: the sender never sends, so only the deadline ends the wait
  run_fake_ranks(
      2,
      [](Communicator& c) {
        PipelineP2P p2p(c, {2, 16, 32}, DType::F32);
        if (p2p.is_first()) return;
        try {
          p2p.recv_forward(3);
          ADD_FAILURE() << "recv_forward returned without a matching send";
        } catch (const CommTimeout& e) {
          EXPECT_NE(std::string(e.what()).find("recv from rank 0"), std::string::npos) << e.what();
        }
      },
      o);
}

}  // namespace
}  // namespace loom::pipeline

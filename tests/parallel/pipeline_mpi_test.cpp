// Pipeline parallelism across MPI processes (np 2, 3, 4), TESTPLAN R-3: the world as one pipeline
// (pp = np; 4 layers split 2+1+1 at np 3), GPipe and 1F1B, M = 8 micro-batches, against one
// process accumulating the same 8 micro-batches (computed on every rank): untied embeddings
// bitwise (loss and params for 20 AdamW steps, all grads at step 1), tied at step 1 in f32 (loss
// bitwise, wte grad rel <= 1e-6) and for 20 steps in f64 (rel <= 1e-10; PipelineCases.h). At
// even np also PP=2 x DP=np/2 from a ProcessGrid: side-by-side pipelines on the grid's pp groups.
#include <gtest/gtest.h>
#include <mpi.h>

#include "parallel/ProcessGroups.h"
#include "parallel/comm/MpiCommunicator.h"
#include "tests/parallel/PipelineCases.h"

namespace loom::pipeline {
namespace {

std::shared_ptr<MpiCommunicator> world() {
  CommOptions o;
  o.name = "pp";
  o.timeout_s = 60.0;  // TESTPLAN: every collective in a multi-rank test has a 60 s deadline
  return MpiCommunicator::world(o);
}

void check_case(Communicator& pp, ScheduleKind kind, bool tied, int64_t C) {
  SCOPED_TRACE(testing::Message() << "pp=" << pp.size() << " " << schedule_name(kind)
                                  << (tied ? " tied" : " untied") << " C=" << C);
  const int64_t M = 8;
  const models::GPTConfig cfg = test::tiny_config(tied, C);
  const auto mbs = test::make_micro_batches(M, cfg.vocab_size, 42);
  // f32 over all steps untied; tied: f32 for step 1, then f64 for all steps.
  const int steps = test::kSteps;
  test::RunResult ref = test::run_reference(cfg, mbs, tied ? 1 : steps);
  test::RunResult mine = test::run_pipelined(pp, cfg, mbs, kind, tied ? 1 : steps);
  test::expect_matches(mine, ref, tied, pp.rank());
  if (tied) {
    test::expect_matches(test::run_pipelined(pp, cfg, mbs, kind, steps, DType::F64),
                         test::run_reference(cfg, mbs, steps, DType::F64), tied, pp.rank(),
                         DType::F64);
  }
  test::expect_live_bound(mine, kind, pp.rank(), pp.size(), M);

  // Every parameter lives on exactly one stage (the tied weight on two).
  Tensor count = Tensor::scalar(double(mine.params.size()), DType::I64);
  pp.all_reduce(count);
  const int64_t copies = (tied && pp.size() > 1) ? 1 : 0;
  EXPECT_EQ(int64_t(count.item()), int64_t(ref.params.size()) + copies);
  if (tied && pp.size() > 1) {
    // The two copies of the tied weight are bitwise equal: the last stage sends its copy.
    const bool first = pp.rank() == 0, last = pp.rank() == pp.size() - 1;
    if (last) pp.send(mine.params.at("wte.weight"), 0, 7);
    if (first) {
      Tensor theirs = Tensor::empty(mine.params.at("wte.weight").shape());
      pp.recv(theirs, pp.size() - 1, 7);
      EXPECT_TRUE(test::bitwise_equal(theirs, mine.params.at("wte.weight")));
    }
  }
}

TEST(PipelineMpiTest, WorldPipelineMatchesGradientAccumulation) {
  auto c = world();
  for (ScheduleKind kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
    check_case(*c, kind, /*tied=*/false, 32);
    check_case(*c, kind, /*tied=*/true, 64);
  }
}

TEST(PipelineMpiTest, PipelinesInsideAProcessGrid) {
  // PP=2 x DP=np/2 at even np (each DP replica runs the same pipeline); PP=3 x DP=1 at np 3.
  auto c = world();
  const int pp = c->size() % 2 == 0 ? 2 : c->size();
  ProcessGrid grid(c, /*tp=*/1, pp, /*dp=*/c->size() / pp);
  check_case(grid.pp_group(), ScheduleKind::OneFOneB, /*tied=*/true, 32);
}

}  // namespace
}  // namespace loom::pipeline

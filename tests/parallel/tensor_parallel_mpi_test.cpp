// Tensor-parallel layers across MPI processes (np 2, 3, 4): the R-2 cases of
// TensorParallelCases.h with the TP group = the world (vocab 11 is padded at every size), again
// with the TP groups of a ProcessGrid (TP=2 x DP=2 at np 4), and R-7 dropout RNG across ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include "parallel/ProcessGroups.h"
#include "parallel/comm/MpiCommunicator.h"
#include "tests/parallel/TensorParallelCases.h"

namespace loom {
namespace {

std::shared_ptr<MpiCommunicator> world() {
  CommOptions o;
  o.name = "tp";
  o.timeout_s = 60.0;  // TESTPLAN: every collective in a multi-rank test has a 60 s deadline
  return MpiCommunicator::world(o);
}

// Every layer case at both dtypes on one TP group.
void run_all_cases(Communicator& tp) {
  for (DType dt : {DType::F64, DType::F32}) {
    SCOPED_TRACE(testing::Message() << "tp=" << tp.size() << " dtype=" << dtype_name(dt));
    test::check_column_parallel(tp, dt, false);
    test::check_column_parallel(tp, dt, true);
    test::check_row_parallel(tp, dt, true);
    test::check_row_parallel(tp, dt, false);
    test::check_vocab_parallel_embedding(tp, dt, 11);
    test::check_vocab_parallel_cross_entropy(tp, dt, 11, Reduction::Mean);
    test::check_vocab_parallel_cross_entropy(tp, dt, 11, Reduction::None);
    test::check_vocab_parallel_cross_entropy(tp, dt, 101, Reduction::Mean);
    test::check_linear_cross_entropy(tp, dt, 11, 30, Reduction::Mean);
    test::check_tied_embedding_head_loss(tp, dt, 11);
    test::check_parallel_mlp(tp, dt);
    test::check_parallel_mlp(tp, dt, 0.3);
    test::check_parallel_block(tp, dt, 12);  // 12 heads split over 2, 3 or 4 ranks
  }
}

TEST(TensorParallelMpiTest, LayersMatchTP1WithTheWorldAsTPGroup) {
  auto c = world();
  run_all_cases(*c);
}

TEST(TensorParallelMpiTest, LayersMatchTP1InsideAProcessGrid) {
  // TP=2 x DP=size/2 at even sizes (np 4: two TP groups side by side), TP=1 x DP=3 at np 3.
  auto c = world();
  const int tp = c->size() % 2 == 0 ? 2 : 1;
  ProcessGrid grid(c, tp, /*pp=*/1, /*dp=*/c->size() / tp);
  run_all_cases(grid.tp_group());
}

TEST(TensorParallelMpiTest, DropoutRngDiffersInsideAndAgreesOutsideTPRegions) {
  auto c = world();
  test::check_dropout_rng(*c);
}

}  // namespace
}  // namespace loom

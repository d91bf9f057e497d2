// Deliberately failing multi-rank test binary for the harness self-test (TESTPLAN R-18). It is
// built but not registered with CTest; MpiHarnessTest runs it under mpirun and checks that the
// failure on rank 3 alone is reported as failed on every rank, with rank 3's text on rank 0.
#include <gtest/gtest.h>
#include <mpi.h>

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

TEST(HarnessHelper, PassesOnEveryRank) { EXPECT_EQ(1 + 1, 2); }

TEST(HarnessHelper, FailsOnlyOnRank3) {
  EXPECT_NE(world_rank(), 3) << "deliberate failure marker from rank 3";
}

}  // namespace

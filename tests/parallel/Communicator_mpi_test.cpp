// MpiCommunicator under mpirun (np 2, 3, 4): R-1 conformance (ordered mode bitwise vs the
// rank-ordered reference; native mode within the summation error bound), R-15 hang (rank 2 skips
// one all_reduce, 5 s deadline), R-16 fingerprint mismatch in debug mode, split and ProcessGrid.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cmath>

#include "parallel/ProcessGroups.h"
#include "parallel/comm/MpiCommunicator.h"
#include "tests/parallel/CommConformance.h"

namespace loom {
namespace {

CommOptions opts(const std::string& name, double timeout_s, bool ordered, bool debug = false) {
  CommOptions o;
  o.name = name;
  o.timeout_s = timeout_s;
  o.ordered_reduce = ordered;
  o.debug = debug;
  return o;
}

// Fresh communicator per test (a dup of MPI_COMM_WORLD), so a broken one never leaks across tests.
std::shared_ptr<MpiCommunicator> fresh(const CommOptions& o) { return MpiCommunicator::world(o); }

TEST(MpiCommunicatorTest, ConformanceOrderedModeIsBitwiseRankOrdered) {
  auto c = fresh(opts("world", 10.0, /*ordered=*/true));  // every op within a 10 s deadline
  test::run_conformance(*c);
}

TEST(MpiCommunicatorTest, ConformanceInDebugModeToo) {
  auto c = fresh(opts("world", 10.0, true, /*debug=*/true));
  test::run_conformance(*c);
}

TEST(MpiCommunicatorTest, NativeSumIsWithinTheSummationErrorBound) {
  auto c = fresh(opts("world", 10.0, /*ordered=*/false));
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor t = test::make_input(c->rank(), 1031, dt, 5);
    c->all_reduce(t);
    Tensor want = test::expected_reduction(c->size(), 1031, 0, 1031, dt, 5, ReduceOp::Sum);
    std::vector<double> got = t.to_vector<double>(), ref = want.to_vector<double>();
    // Any summation order of n terms errs from the exact sum by at most (n-1)*eps*sum|x_r|
    // (Higham, recursive summation), so native vs rank-ordered differ by at most twice that;
    // sum|x_r| <= sum_r (1+r)*1.000123 by construction of the inputs.
    double eps = dt == DType::F32 ? 0x1p-24 : 0x1p-53;
    double n = c->size(), bound = (n - 1) * eps * n * (n + 1) / 2 * 1.000123 * 2 + 1e-300;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], bound) << i;
  }
  Tensor i64 = Tensor::full({3}, double(c->rank() + 1), DType::I64);
  c->all_reduce(i64);
  EXPECT_EQ(i64.to_vector<int64_t>(), std::vector<int64_t>(3, c->size() * (c->size() + 1) / 2));
}

TEST(MpiCommunicatorTest, HangRaisesCommTimeoutNamingTheMissingRank) {
  // rank 2 skips the second all_reduce; 5 s deadline; the others must raise CommTimeout
  // within 10 s naming op, seq, group and missing rank 2. Needs >= 3 ranks.
  auto world = fresh(opts("world", 60.0, true));
  if (world->size() < 3) GTEST_SKIP() << "needs >= 3 ranks (rank 2 must exist)";
  auto c = fresh(opts("hang", 5.0, true));
  Tensor t = Tensor::ones({8});
  c->all_reduce(t);
  if (c->rank() != 2) {
    auto t0 = std::chrono::steady_clock::now();
    std::string msg;
    try {
      c->all_reduce(t);
    } catch (const CommTimeout& e) {
      msg = e.what();
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(msg.find("all_reduce (seq 1)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("group 'hang'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("did not arrive: world ranks [2]"), std::string::npos) << msg;
    EXPECT_GE(s, 5.0 * 0.9);  // the deadline, minus 10% for clock granularity
    EXPECT_LT(s, 10.0);       // R-15 bound
    EXPECT_THROW(c->barrier(), CommError);  // the communicator is unusable after a timeout
  }
  world->barrier();  // everyone, rank 2 included, finishes the test cleanly
}

TEST(MpiCommunicatorTest, DebugModeRaisesCollectiveMismatch) {
  // rank 1 all_gathers while the others all_reduce; then a shape and a dtype mismatch.
  auto c = fresh(opts("dbg", 10.0, true, /*debug=*/true));
  Tensor t = Tensor::ones({4});
  auto mismatch = [&](const std::function<void()>& f) -> std::string {
    auto t0 = std::chrono::steady_clock::now();
    try {
      f();
    } catch (const CollectiveMismatch& e) {
      EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
      return e.what();
    }
    return "no exception";
  };
  std::string m1 = mismatch([&] {
    if (c->rank() == 1) {
      Tensor out = Tensor::empty({4 * c->size()});
      c->all_gather(out, t);
    } else {
      c->all_reduce(t);
    }
  });
  EXPECT_NE(m1.find("seq 0"), std::string::npos) << m1;
  EXPECT_NE(m1.find("rank 1 called all_gather seq=0 f32[4]"), std::string::npos) << m1;
  EXPECT_NE(m1.find("all_reduce(sum) seq=0 f32[4]"), std::string::npos) << m1;
  std::string m2 = mismatch([&] { c->all_reduce(c->rank() == 1 ? Tensor::ones({5}) : t); });
  EXPECT_NE(m2.find("seq=1 f32[5]"), std::string::npos) << m2;
  std::string m3 = mismatch([&] { c->all_reduce(c->rank() == 1 ? Tensor::ones({4}, DType::F64) : t); });
  EXPECT_NE(m3.find("seq=2 f64[4]"), std::string::npos) << m3;
  c->all_reduce(t);  // nothing was posted for the mismatched calls: the group still works
  EXPECT_EQ(t.to_vector<float>(), std::vector<float>(4, float(c->size())));
}

TEST(MpiCommunicatorTest, ProcessGridSplitsTheWorld) {
  auto world = fresh(opts("world", 10.0, true));
  int n = world->size();
  int tp = n % 2 == 0 ? 2 : 1;
  ProcessGrid g(world, tp, 1, n / tp);
  Tensor t = Tensor::full({1}, double(world->rank()), DType::I64);
  g.tp_group().all_reduce(t);
  int base = world->rank() - g.tp_rank();
  EXPECT_EQ(t.item(), tp == 2 ? double(2 * base + 1) : double(base));
  EXPECT_EQ(g.dp_group().size(), n / tp);
  EXPECT_THROW(ProcessGrid(world, n + 1, 1, 1), ValueError);
}

}  // namespace
}  // namespace loom

// FakeCommunicator (threads as ranks): R-1 conformance for N in {2,3,4,8}, the R-15 hang and R-16
// mismatch scenarios in-process, split, and argument validation. Same claims as the MPI tests.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "parallel/comm/FakeCommunicator.h"
#include "tests/parallel/CommConformance.h"

namespace loom {
namespace {

CommOptions opts(double timeout_s) {
  CommOptions o;
  o.timeout_s = timeout_s;
  o.ordered_reduce = true;
  return o;
}

// Collects gtest failures from rank threads: assertions in other threads still count for the test.
TEST(FakeCommunicatorTest, ConformanceAllOpsAllDTypesAllSizes) {
  for (int n : {2, 3, 4, 8}) {
    SCOPED_TRACE(n);
    run_fake_ranks(n, [](Communicator& c) { test::run_conformance(c); }, opts(10.0));  // R-1 deadline
  }
}

TEST(FakeCommunicatorTest, AsyncOpsCompleteInAnyWaitOrder) {
  run_fake_ranks(3, [](Communicator& c) {
    Tensor a = Tensor::full({5}, c.rank() + 1.0, DType::F64);
    Tensor b = Tensor::full({2}, 10.0 * c.rank(), DType::F64);
    auto wa = c.all_reduce_async(a);
    auto wb = c.all_reduce_async(b, ReduceOp::Max);
    wb->wait();
    wa->wait();
    EXPECT_TRUE(wa->is_completed());
    EXPECT_EQ(a.to_vector<double>(), std::vector<double>(5, 6.0));
    EXPECT_EQ(b.to_vector<double>(), std::vector<double>(2, 20.0));
    EXPECT_EQ(c.next_seq(), 2);
  }, opts(10.0));
}

TEST(FakeCommunicatorTest, HangTimesOutNamingOpSeqGroupAndMissingRank) {
  // R-15 in-process: rank 2 skips the second all_reduce; every other rank must raise CommTimeout
  // within the deadline plus slack, naming the op, seq, group and the missing rank.
  constexpr double kDeadline = 0.5;  // scaled-down 5 s deadline; Fake needs no diagnosis round
  std::vector<std::string> messages(4);
  std::vector<double> seconds(4, 0.0);
  run_fake_ranks(4, [&](Communicator& c) {
    Tensor t = Tensor::ones({3});
    c.all_reduce(t);
    if (c.rank() == 2) return;
    auto t0 = std::chrono::steady_clock::now();
    try {
      c.all_reduce(t);
    } catch (const CommTimeout& e) {
      messages[size_t(c.rank())] = e.what();
    }
    seconds[size_t(c.rank())] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }, opts(kDeadline));
  for (int r : {0, 1, 3}) {
    const std::string& m = messages[size_t(r)];
    EXPECT_NE(m.find("all_reduce (seq 1)"), std::string::npos) << m;
    EXPECT_NE(m.find("group 'world' (world ranks [0, 1, 2, 3])"), std::string::npos) << m;
    EXPECT_NE(m.find("did not arrive: world ranks [2]"), std::string::npos) << m;
    EXPECT_GE(seconds[size_t(r)], kDeadline * 0.9);  // 10% for clock granularity
    EXPECT_LT(seconds[size_t(r)], kDeadline * 2 + 1.0);  // raise within 2x deadline
  }
}

TEST(FakeCommunicatorTest, MismatchedOpShapeAndDTypeRaiseCollectiveMismatch) {
  // rank 1 calls all_gather while the others all_reduce; then a shape, then a dtype mismatch.
  std::vector<std::vector<std::string>> msgs(3);
  run_fake_ranks(3, [&](Communicator& c) {
    auto expect_mismatch = [&](const std::function<void()>& f) {
      try {
        f();
        msgs[size_t(c.rank())].push_back("no exception");
      } catch (const CollectiveMismatch& e) {
        msgs[size_t(c.rank())].push_back(e.what());
      }
    };
    Tensor t = Tensor::ones({4});
    expect_mismatch([&] {
      if (c.rank() == 1) {
        Tensor out = Tensor::empty({12});
        c.all_gather(out, t);
      } else {
        c.all_reduce(t);
      }
    });
    expect_mismatch([&] { c.all_reduce(c.rank() == 1 ? Tensor::ones({5}) : t); });
    expect_mismatch([&] { c.all_reduce(c.rank() == 1 ? Tensor::ones({4}, DType::F64) : t); });
  }, opts(10.0));
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(msgs[size_t(r)].size(), 3u);
    EXPECT_NE(msgs[size_t(r)][0].find("seq 0"), std::string::npos) << msgs[size_t(r)][0];
    EXPECT_NE(msgs[size_t(r)][0].find("all_gather seq=0 f32[4]"), std::string::npos) << msgs[size_t(r)][0];
    EXPECT_NE(msgs[size_t(r)][0].find("all_reduce(sum) seq=0 f32[4]"), std::string::npos) << msgs[size_t(r)][0];
    EXPECT_NE(msgs[size_t(r)][1].find("f32[5]"), std::string::npos) << msgs[size_t(r)][1];
    EXPECT_NE(msgs[size_t(r)][2].find("f64[4]"), std::string::npos) << msgs[size_t(r)][2];
  }
}

TEST(FakeCommunicatorTest, RecvTimeoutNamesTheSender) {
  std::string msg;
  run_fake_ranks(2, [&](Communicator& c) {
    if (c.rank() != 0) return;
    Tensor t = Tensor::empty({2});
    try {
      c.recv(t, 1, 7);
    } catch (const CommTimeout& e) {
      msg = e.what();
    }
  }, opts(0.2));
  EXPECT_NE(msg.find("recv from rank 1 (tag 7)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("world rank 1 sent nothing"), std::string::npos) << msg;
}

TEST(FakeCommunicatorTest, SplitFormsGroupsOrderedByKey) {
  run_fake_ranks(6, [](Communicator& c) {
    int color = c.rank() % 2;
    auto g = c.split(color, -c.rank(), color ? "odd" : "even");  // reversed order inside groups
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(g->size(), 3);
    EXPECT_EQ(g->world_ranks()[0], 4 + color);
    Tensor t = Tensor::full({1}, double(c.rank()), DType::I64);
    g->all_reduce(t);
    EXPECT_EQ(t.item(), color ? 1 + 3 + 5 : 0 + 2 + 4);
    EXPECT_EQ(c.split(-1, 0, "none"), nullptr);
  }, opts(10.0));
}

TEST(FakeCommunicatorTest, BadArgumentsThrowValueError) {
  run_fake_ranks(2, [](Communicator& c) {
    Tensor in = Tensor::ones({3});
    EXPECT_THROW(c.all_gather(Tensor::empty({5}), in), ValueError);
    EXPECT_THROW(c.reduce_scatter(Tensor::empty({2}), in), ValueError);
    EXPECT_THROW(c.all_gather(Tensor::empty({6}, DType::F64), in), ValueError);
    EXPECT_THROW(c.all_reduce(Tensor::ones({2, 3}).t()), ValueError);
    EXPECT_THROW(c.broadcast(in, 2), ValueError);
    EXPECT_THROW(c.send(in, c.rank()), ValueError);
    EXPECT_EQ(c.next_seq(), 0);  // rejected calls do not consume a sequence number
  }, opts(10.0));
}

}  // namespace
}  // namespace loom

// NcclCommunicator on one GPU (world size 1, bootstrapped over a one-rank Fake world): every
// collective gives the right result on device tensors, the rank-ordered sum paths (bf16, ordered
// f32), split, CPU tensors rejected, and the deadline path (a collective queued behind long compute
// work times out, aborts the communicator and names op, group and seq). Multi-rank NCCL runs need
// one process per GPU and are not part of this single-GPU suite. Skips without NCCL or a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/random/Generator.h"
#include "parallel/comm/FakeCommunicator.h"
#include "parallel/comm/NcclCommunicator.h"

namespace loom {
namespace {

#define LOOM_REQUIRE_NCCL()                                                              \
  do {                                                                                   \
    if (!::loom::NcclCommunicator::available())                                          \
      GTEST_SKIP() << "NCCL tests need a Loom build with NCCL and a CUDA device "        \
                      "(NcclCommunicator::available() is false)";                        \
  } while (0)

std::shared_ptr<NcclCommunicator> make_nccl(CommOptions opts = {}) {
  auto boot = FakeCommunicator::create_world(1);
  return NcclCommunicator::create(*boot[0], 0, opts);
}

Tensor dev(const std::vector<float>& v) {
  return Tensor::from_vector(v, {int64_t(v.size())}, Device::cuda(0));
}

std::vector<float> host(const Tensor& t) { return t.to(Device::cpu()).to_vector<float>(); }

const std::vector<float> kValues = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};

TEST(NcclCommunicatorGpuTest, CreateOnOneRank) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->device(), 0);
  EXPECT_EQ(c->world_ranks(), std::vector<int>{0});
  auto boot = FakeCommunicator::create_world(1);
  EXPECT_EQ(NcclCommunicator::local_device(*boot[0]), 0);  // first rank on this host
}

TEST(NcclCommunicatorGpuTest, AllReduceSumAndMax) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  Tensor t = dev(kValues);
  uint64_t v0 = t.version();
  c->all_reduce(t, ReduceOp::Sum);  // one rank: the sum is the value itself
  EXPECT_EQ(host(t), kValues);
  EXPECT_GT(t.version(), v0);
  c->all_reduce(t, ReduceOp::Max);
  EXPECT_EQ(host(t), kValues);
  Tensor i = Tensor::from_vector(std::vector<int64_t>{5, -9, 1LL << 40}, {3}, Device::cuda(0));
  c->all_reduce(i);
  EXPECT_EQ(i.to(Device::cpu()).to_vector<int64_t>(), (std::vector<int64_t>{5, -9, 1LL << 40}));
}

TEST(NcclCommunicatorGpuTest, OrderedSumPaths) {
  LOOM_REQUIRE_NCCL();
  CommOptions opts;
  opts.ordered_reduce = true;
  auto c = make_nccl(opts);
  Tensor t = dev(kValues).view({2, 3});
  c->all_reduce(t);  // gather + rank-ordered f32 sum on the compute stream
  EXPECT_EQ(host(t.view({6})), kValues);
  Tensor b = dev(kValues).to(DType::BF16);  // bf16 sums are always ordered
  std::vector<float> want = b.to(DType::F32).to(Device::cpu()).to_vector<float>();
  c->all_reduce(b);
  EXPECT_EQ(b.to(DType::F32).to(Device::cpu()).to_vector<float>(), want);
  Tensor out = Tensor::empty({6}, DType::F32, Device::cuda(0));
  c->reduce_scatter(out, dev(kValues));  // all-to-all of blocks + ordered sum
  EXPECT_EQ(host(out), kValues);
}

TEST(NcclCommunicatorGpuTest, GatherScatterBroadcastBarrier) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  Tensor out = Tensor::zeros({6}, DType::F32, Device::cuda(0));
  c->all_gather(out, dev(kValues));
  EXPECT_EQ(host(out), kValues);
  Tensor rs = Tensor::zeros({6}, DType::F32, Device::cuda(0));
  c->reduce_scatter(rs, dev(kValues), ReduceOp::Max);
  EXPECT_EQ(host(rs), kValues);
  Tensor b = dev(kValues);
  c->broadcast(b, 0);
  EXPECT_EQ(host(b), kValues);
  c->barrier();
  EXPECT_EQ(c->next_seq(), 4);
}

TEST(NcclCommunicatorGpuTest, AsyncWorkOverlapsAndCompletes) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  Generator g(7);
  Tensor a = Tensor::randn({1024, 1024}, g, DType::F32, Device::cuda(0));
  Tensor grad = dev(kValues);
  WorkPtr w = c->all_reduce_async(grad);
  Tensor y = matmul(a, a);  // compute queued while the reduction is in flight
  w->wait();
  EXPECT_TRUE(w->is_completed());
  EXPECT_EQ(host(grad), kValues);
  EXPECT_EQ(y.size(0), 1024);
}

TEST(NcclCommunicatorGpuTest, SplitKeepsMembersAndDropsNoColor) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  auto sub = c->split(0, 0, "sub");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->size(), 1);
  EXPECT_EQ(sub->name(), "sub");
  EXPECT_EQ(sub->world_ranks(), std::vector<int>{0});
  Tensor t = dev(kValues);
  sub->all_reduce(t);
  EXPECT_EQ(host(t), kValues);
  EXPECT_EQ(c->split(-1, 0, "none"), nullptr);
}

TEST(NcclCommunicatorGpuTest, CpuTensorsAreAValueError) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  Tensor cpu = Tensor::zeros({4});
  try {
    c->all_reduce(cpu);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("expects CUDA tensors on cuda:0, got a tensor on cpu"),
              std::string::npos) << e.what();
  }
}

TEST(NcclCommunicatorGpuTest, DeadlineAbortsAndNamesTheOp) {
  LOOM_REQUIRE_NCCL();
  auto c = make_nccl();
  Generator g(3);
  Tensor a = Tensor::randn({8192, 8192}, g, DType::F32, Device::cuda(0));
  for (int i = 0; i < 20; ++i) a = matmul(a, a) * 1e-4;  // ~22 TFLOP of compute ahead of the op
  Tensor t = dev(kValues);
  c->set_timeout_s(1e-3);  // the op waits for the compute stream, far longer than 1 ms
  WorkPtr w = c->all_reduce_async(t);
  try {
    w->wait();
    FAIL() << "expected CommTimeout";
  } catch (const CommTimeout& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("all_reduce (seq 0)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("group 'world' (world ranks [0])"), std::string::npos) << msg;
    EXPECT_NE(msg.find("NCCL does not report which ranks"), std::string::npos) << msg;
  }
  EXPECT_THROW(c->barrier(), CommError);  // aborted: unusable from now on
}

}  // namespace
}  // namespace loom

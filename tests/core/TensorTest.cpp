// Storage, views and aliasing, clone, dtype conversion, printing, RNG determinism (TESTPLAN U4).
#include <gtest/gtest.h>

#include "core/autograd/GradMode.h"
#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"
#include "tests/support/GradCheck.h"

namespace loom {
namespace {

Tensor iota(const Shape& s, DType dt = DType::F32) {
  std::vector<double> v(size_t(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = double(i);
  return Tensor::from_vector(v, s).to(dt);
}

TEST(TensorTest, FactoriesHaveShapeDtypeAndValues) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.dtype(), DType::F32);
  EXPECT_TRUE(z.is_contiguous());
  for (float v : z.to_vector<float>()) EXPECT_EQ(v, 0.0f);
  Tensor f = Tensor::full({4}, 2.5, DType::F64);
  for (double v : f.to_vector<double>()) EXPECT_EQ(v, 2.5);
  EXPECT_EQ(Tensor::scalar(3.0).dim(), 0);
  EXPECT_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_EQ(Tensor::arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(TensorTest, ViewsAliasStorageAndCloneDoesNot) {
  Tensor x = iota({2, 3, 4});
  Tensor t = x.transpose(0, 2);
  EXPECT_TRUE(t.shares_storage(x));
  EXPECT_EQ(t.raw_data(), x.raw_data());
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  Tensor n = x.narrow(1, 1, 2);
  EXPECT_TRUE(n.shares_storage(x));
  EXPECT_EQ(n.to_vector<float>()[0], 4.0f);
  Tensor c = x.clone();
  EXPECT_FALSE(c.shares_storage(x));
  EXPECT_NE(c.raw_data(), x.raw_data());
  // Writing through a view is visible in the base; writing the clone is not.
  {
    NoGradGuard g;
    n.fill_(-1.0);
  }
  EXPECT_EQ(x.to_vector<float>()[4], -1.0f);
  EXPECT_EQ(c.to_vector<float>()[4], 4.0f);
}

TEST(TensorTest, TransposeContiguousMatchesManualPermutation) {
  Tensor x = iota({2, 3});
  Tensor y = x.t().contiguous();
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor p = iota({2, 3, 4}).permute({2, 0, 1}).contiguous();
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  // p[k][i][j] = x[i][j][k] = 12 i + 4 j + k
  EXPECT_EQ(p.to_vector<float>()[1 * 6 + 1 * 3 + 2], 12.0f + 8.0f + 1.0f);
}

TEST(TensorTest, ReshapeOfViewCopiesOnlyWhenNeeded) {
  Tensor x = iota({4, 6});
  Tensor v = x.view({2, 2, 6});
  EXPECT_TRUE(v.shares_storage(x));
  Tensor r = x.t().reshape({24});  // not viewable -> copy
  EXPECT_FALSE(r.shares_storage(x));
  EXPECT_EQ(r.to_vector<float>()[1], 6.0f);
  EXPECT_THROW(x.t().view({24}), ValueError);
  EXPECT_THROW(x.view({5, 5}), ValueError);
  EXPECT_EQ(x.view({-1, 3}).shape(), (Shape{8, 3}));
  Tensor s = x.slice(1, 0, 6, 2);  // every other column
  EXPECT_EQ(s.shape(), (Shape{4, 3}));
  EXPECT_EQ(s.to_vector<float>()[1], 2.0f);
}

TEST(TensorTest, ExpandBroadcastsWithStrideZero) {
  Tensor b = iota({3});
  Tensor e = b.expand({2, 3});
  EXPECT_EQ(e.strides(), (Shape{0, 1}));
  EXPECT_EQ(e.contiguous().to_vector<float>(), (std::vector<float>{0, 1, 2, 0, 1, 2}));
  EXPECT_THROW(b.expand({2, 4}), ValueError);
}

TEST(TensorTest, DtypeConversionsRoundTrip) {
  Tensor x = Tensor::from_vector<float>({1.5f, -2.25f, 3.0f, 65504.0f}, {4});
  EXPECT_EQ(x.to(DType::F64).to(DType::F32).to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(x.to(DType::BF16).to(DType::F32).to_vector<float>()[0], 1.5f);
  EXPECT_EQ(x.to(DType::F16).to(DType::F32).to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(x.to(DType::I64).to_vector<int64_t>()[1], -2);
  EXPECT_EQ(x.to(DType::Bool).to_vector<bool>()[0], true);
  // bf16 rounds to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(float(BFloat16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(float(Half(1e-7f)), 1.1920928955078125e-07f);  // f16 subnormal
}

TEST(TensorTest, VersionCounterIsSharedByViews) {
  Tensor x = iota({4});
  Tensor v = x.narrow(0, 0, 2);
  uint64_t v0 = x.version();
  v.fill_(1.0);
  EXPECT_EQ(x.version(), v0 + 1);
  EXPECT_EQ(v.version(), x.version());
}

TEST(TensorTest, PrintingShowsShapeDtypeAndValues) {
  std::string s = iota({2, 2}).str();
  EXPECT_NE(s.find("shape=(2, 2)"), std::string::npos) << s;
  EXPECT_NE(s.find("f32"), std::string::npos) << s;
  EXPECT_NE(s.find("[[0, 1], [2, 3]]"), std::string::npos) << s;
  std::string big = iota({100}).str();
  EXPECT_NE(big.find("..."), std::string::npos) << big;
}

TEST(TensorTest, RandomValuesDoNotDependOnThreadCount) {
  int prev = cpu::num_threads();
  Generator g1(42);
  cpu::set_num_threads(1);
  Tensor a = Tensor::randn({300000}, g1);
  Generator g2(42);
  cpu::set_num_threads(2);
  Tensor b = Tensor::randn({300000}, g2);
  cpu::set_num_threads(prev);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(g1.offset(), 300000u);
  // A different seed gives different values; normal stats look right.
  Generator g3(43);
  Tensor c = Tensor::randn({300000}, g3);
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
  double mean = 0, var = 0;
  for (float v : a.to_vector<float>()) mean += v;
  mean /= 300000;
  for (float v : a.to_vector<float>()) var += (v - mean) * (v - mean);
  var /= 300000;
  // 300k samples: standard error of the mean ~0.002, of the variance ~0.003.
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.015);
  Generator g4(7);
  Tensor u = Tensor::rand({10000}, g4, DType::F64, Device::cpu(), 2.0, 3.0);
  for (double v : u.to_vector<double>()) {
    EXPECT_GE(v, 2.0);
    EXPECT_LT(v, 3.0);
  }
}

TEST(TensorTest, ErrorsNameTheProblem) {
  try {
    Tensor::from_vector<float>({1, 2, 3}, {2, 2});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("expected 4 values"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tensor::zeros({2}).set_requires_grad(true).fill_(1.0), ValueError);
  EXPECT_THROW(Tensor::zeros({2}, DType::I64).set_requires_grad(true), ValueError);
  EXPECT_THROW(Tensor::zeros({2}).to(Device::cuda(0)).numel(),
               ValueError);  // no CUDA backend in CPU-only runs
}

TEST(TensorTest, AllocatorTracksLiveBytes) {
  size_t base = cpu_backend().allocated_bytes(0);
  {
    Tensor t = Tensor::empty({1024}, DType::F64);
    EXPECT_EQ(cpu_backend().allocated_bytes(0), base + 8192);
  }
  EXPECT_EQ(cpu_backend().allocated_bytes(0), base);
}

TEST(TensorTest, CappedAllocatorThrowsOutOfMemoryAndRecovers) {
  auto& be = cpu::the_cpu_backend();
  size_t base = be.allocated_bytes(0);
  be.set_memory_limit(base + (64u << 20));  // a 64 MiB fake device (TESTPLAN U10)
  try {
    Tensor big = Tensor::empty({int64_t(128) << 20}, DType::F32);
    be.set_memory_limit(0);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("requested 536870912 bytes"), std::string::npos) << m;
    EXPECT_NE(m.find("free"), std::string::npos) << m;
  }
  { Tensor small = Tensor::empty({1 << 18}, DType::F32); EXPECT_EQ(small.numel(), 1 << 18); }
  EXPECT_EQ(be.allocated_bytes(0), base);
  be.set_memory_limit(0);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {
TEST(TensorTest, ZeroDimTensorsViewAsOneElementShapes) {
  Tensor s = Tensor::scalar(4.0);
  EXPECT_EQ(s.view({1}).shape(), (Shape{1}));
  EXPECT_EQ(s.reshape({1, 1}).to_vector<float>(), (std::vector<float>{4.0f}));
  EXPECT_EQ(s.view({1}).view({}).dim(), 0);
}
}  // namespace
}  // namespace loom

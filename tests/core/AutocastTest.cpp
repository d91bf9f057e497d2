// bf16 autocast on the CPU: the guard is a no-op there (CPU kernels are f32/f64 only, so nothing
// is cast; tests/gpu/AutocastGpuTest.cpp also checks a whole GPT loss), it nests and restores the
// previous state, and it rejects dtypes other than bf16 / f32.
#include <gtest/gtest.h>

#include "core/autograd/Autocast.h"
#include "core/ops/Attention.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"

namespace loom {
namespace {

using autograd::Autocast;

Tensor randn(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, g, DType::F32, Device::cpu());
}

TEST(AutocastTest, GuardNestsAndRestores) {
  EXPECT_FALSE(Autocast::is_enabled());
  {
    AutocastGuard on(DType::BF16);
    EXPECT_EQ(Autocast::dtype(), DType::BF16);
    {
      AutocastGuard off(DType::F32);
      EXPECT_FALSE(Autocast::is_enabled());
    }
    EXPECT_TRUE(Autocast::is_enabled());
  }
  EXPECT_EQ(Autocast::dtype(), DType::F32);
}

TEST(AutocastTest, RejectsOtherDtypes) {
  EXPECT_THROW(AutocastGuard g(DType::F16), ValueError);
  EXPECT_THROW(AutocastGuard g(DType::I64), ValueError);
  EXPECT_FALSE(Autocast::is_enabled());
}

TEST(AutocastTest, OpsOnCpuTensorsAreUnchanged) {
  Tensor x = randn({2, 8, 16}, 1), w = randn({24, 16}, 2), b = randn({24}, 3);
  Tensor q = randn({2, 2, 8, 4}, 4);
  Tensor ref_lin = linear(x, w, b), ref_att = scaled_dot_product_attention(q, q, q, true);
  Tensor ref_sm = softmax(x, -1);
  AutocastGuard ac(DType::BF16);
  Tensor lin = linear(x, w, b), att = scaled_dot_product_attention(q, q, q, true);
  Tensor sm = softmax(x, -1);
  EXPECT_EQ(lin.dtype(), DType::F32);
  EXPECT_EQ(att.dtype(), DType::F32);
  EXPECT_EQ(lin.to_vector<float>(), ref_lin.to_vector<float>());  // bitwise: same kernels
  EXPECT_EQ(att.to_vector<float>(), ref_att.to_vector<float>());
  EXPECT_EQ(sm.to_vector<float>(), ref_sm.to_vector<float>());
}

TEST(AutocastTest, EmbeddingLayerNormCrossEntropyOnCpuAreUnchanged) {
  Tensor table = randn({10, 6}, 5), lw = randn({6}, 6), lb = randn({6}, 7);
  Tensor ids = Tensor::arange(8, DType::I64, Device::cpu());
  Tensor targets = Tensor::zeros({8}, DType::I64, Device::cpu());
  auto run = [&] {
    Tensor h = layer_norm(embedding(table, ids), lw, lb, 1e-5);
    return cross_entropy(h, targets);
  };
  const double ref = run().item();
  AutocastGuard ac(DType::BF16);
  Tensor loss = run();
  EXPECT_EQ(loss.dtype(), DType::F32);
  EXPECT_EQ(loss.item(), ref);
}

}  // namespace
}  // namespace loom

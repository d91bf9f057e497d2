// clip_grad_norm: the total norm over all gradients, scaling only when above max_norm, skipping
// parameters without gradients, and leaving non-finite norms to the caller.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "core/util/Check.h"
#include "optim/ClipGradNorm.h"

namespace loom::optim {
namespace {

Tensor param_with_grad(const std::vector<double>& g, DType dtype = DType::F32) {
  Tensor p = Tensor::zeros({int64_t(g.size())}, dtype).set_requires_grad(true);
  p.set_grad(Tensor::from_vector(g, {int64_t(g.size())}).to(dtype));
  return p;
}

TEST(ClipGradNormTest, ScalesDownToMaxNorm) {
  // grads (3, 4) and (12): total norm sqrt(9 + 16 + 144) = 13, exact in f32.
  Tensor a = param_with_grad({3, 4}), b = param_with_grad({12});
  Tensor none = Tensor::zeros({2}).set_requires_grad(true);  // no grad: skipped
  double total = clip_grad_norm(std::vector<Tensor>{a, none, b}, 1.0);
  EXPECT_EQ(total, 13.0);
  const double coef = 1.0 / (13.0 + 1e-6);  // torch.nn.utils.clip_grad_norm_'s coefficient
  std::vector<float> ga = a.grad().to_vector<float>(), gb = b.grad().to_vector<float>();
  // The scale runs in f32: one rounding of each product (relative 2^-24).
  EXPECT_NEAR(ga[0], 3 * coef, 3 * coef * 6e-8);
  EXPECT_NEAR(ga[1], 4 * coef, 4 * coef * 6e-8);
  EXPECT_NEAR(gb[0], 12 * coef, 12 * coef * 6e-8);
  EXPECT_NEAR(grad_norm({a, b}), 1.0, 1e-6);  // after clipping (1/(1+1e-6/13) rounded in f32)
}

TEST(ClipGradNormTest, LeavesSmallGradientsAlone) {
  Tensor a = param_with_grad({0.3, -0.4}, DType::F64);
  double total = clip_grad_norm(std::vector<NamedParam>{{"a", a}}, 1.0);
  EXPECT_NEAR(total, 0.5, 1e-15);  // f64 sqrt(0.09 + 0.16): one rounding per op
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0.3, -0.4}));
}

TEST(ClipGradNormTest, AccumulatesInF64) {
  // 10^6 gradients of 1e-3 in f32: an f32 running sum would drift; the f64 total is exactly
  // sqrt(10^6 * 1e-6) = 1 up to the f32 representation of 1e-3 (relative 3e-8 -> 1e-7 budget).
  Tensor p = Tensor::zeros({1000000}).set_requires_grad(true);
  p.set_grad(Tensor::full({1000000}, 1e-3));
  EXPECT_NEAR(grad_norm({p}), 1.0, 1e-7);
}

TEST(ClipGradNormTest, NonFiniteNormIsReturnedAndNothingScaled) {
  Tensor a = param_with_grad({std::numeric_limits<double>::infinity(), 1.0});
  Tensor b = param_with_grad({5.0});
  EXPECT_TRUE(std::isinf(clip_grad_norm(std::vector<Tensor>{a, b}, 1.0)));
  EXPECT_EQ(b.grad().to_vector<float>()[0], 5.0f);
  EXPECT_THROW(clip_grad_norm(std::vector<Tensor>{b}, 0.0), ValueError);
}

}  // namespace
}  // namespace loom::optim

// PyTorch goldens for bmm, masked_fill and split (forward and backward, f32 and f64), the ops whose
// family tests carry gradchecks but no PyTorch comparison (tests/golden/gen_extra.py).
#include <gtest/gtest.h>

#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/ops/Reduction.h"
#include "tests/support/GradCheck.h"
#include "tests/support/Golden.h"

namespace loom {
namespace {

using testing::allclose;

struct Tol {
  double atol, rtol;
};
// TESTPLAN U1: f32 atol 1e-6 / rtol 1e-5; f64: these ops are exactly rounded or short sums of
// exactly rounded products (K <= 5), so 1e-12 holds.
Tol tol(const std::string& tag) { return tag == "f32" ? Tol{1e-6, 1e-5} : Tol{1e-12, 1e-12}; }

class GoldenExtraTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenExtraTest, Bmm) {
  testing::GoldenFile g("extra.h5");
  std::string p = "bmm/" + GetParam() + "/";
  Tol t = tol(GetParam());
  Tensor a = g.get(p + "a").set_requires_grad(true), b = g.get(p + "b").set_requires_grad(true);
  Tensor y = bmm(a, b);
  EXPECT_TRUE(allclose(y, g.get(p + "y"), t.atol, t.rtol));
  sum(y * g.get(p + "w")).backward();
  EXPECT_TRUE(allclose(a.grad(), g.get(p + "da"), t.atol, t.rtol));
  EXPECT_TRUE(allclose(b.grad(), g.get(p + "db"), t.atol, t.rtol));
}

TEST_P(GoldenExtraTest, MaskedFill) {
  testing::GoldenFile g("extra.h5");
  std::string p = "masked_fill/" + GetParam() + "/";
  Tol t = tol(GetParam());
  Tensor x = g.get(p + "x").set_requires_grad(true);
  Tensor mask = g.get(p + "mask").to(DType::Bool);
  Tensor y = masked_fill(x, mask, -2.5);
  EXPECT_TRUE(allclose(y, g.get(p + "y"), t.atol, t.rtol));
  sum(y * g.get(p + "w")).backward();
  EXPECT_TRUE(allclose(x.grad(), g.get(p + "dx"), t.atol, t.rtol));
}

TEST_P(GoldenExtraTest, Split) {
  testing::GoldenFile g("extra.h5");
  std::string p = "split/" + GetParam() + "/";
  Tol t = tol(GetParam());
  Tensor x = g.get(p + "x").set_requires_grad(true);
  std::vector<Tensor> parts = split(x, 3, 0);
  ASSERT_EQ(parts.size(), 3u);
  Tensor total;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string n = std::to_string(i);
    EXPECT_TRUE(allclose(parts[i], g.get(p + "y" + n), t.atol, t.rtol)) << "part " << i;
    Tensor s = sum(parts[i] * g.get(p + "w" + n));
    total = total.defined() ? total + s : s;
  }
  total.backward();
  EXPECT_TRUE(allclose(x.grad(), g.get(p + "dx"), t.atol, t.rtol));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GoldenExtraTest, ::testing::Values("f32", "f64"));

}  // namespace
}  // namespace loom

// GEMM kernel vs its reference, and matmul / bmm / linear / gelu_linear: gradcheck in f64 on
// contiguous, transposed-view and broadcast inputs (TESTPLAN U2), fast-vs-reference, and
// forward/backward vs PyTorch goldens (tests/golden/gen_linear_attention.py, TESTPLAN U1).
#include <gtest/gtest.h>

#include <cmath>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/GemmRef.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "tests/support/GradCheck.h"
#include "tests/support/Golden.h"

namespace loom {
namespace {

using testing::allclose;
using testing::gradcheck;

Tensor randn(const Shape& s, uint64_t seed, DType dt = DType::F64) {
  Generator gen(seed);
  return Tensor::randn(s, gen, dt);
}

// The fast GEMM against the reference for every trans combination, alpha/beta, 2-D and batched
// (with a broadcast operand) layouts, f32 and f64.
void check_gemm_vs_ref(DType dt, double atol, double rtol) {
  struct Case { int64_t bt, M, N, K; bool ta, tb, a2d, b_bcast; double alpha, beta; };
  const Case cases[] = {
      {0, 7, 5, 3, false, false, false, false, 1.0, 0.0},
      {0, 33, 17, 65, true, false, false, false, 0.5, 1.0},
      {0, 1, 9, 4, false, true, false, false, 1.0, 0.0},
      {0, 70, 66, 129, true, true, false, false, -2.0, 0.5},
      {3, 5, 6, 7, false, false, false, false, 1.0, 0.0},
      {4, 8, 3, 130, true, false, true, false, 1.0, 1.0},
      {5, 200, 150, 120, false, true, false, true, 1.5, 0.0},  // large enough for BLAS threads
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "bt " << c.bt << " M " << c.M << " N " << c.N << " K "
                                    << c.K << " ta " << c.ta << " tb " << c.tb);
    Shape sa = c.ta ? Shape{c.K, c.M} : Shape{c.M, c.K};
    Shape sb = c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N};
    Shape sc{c.M, c.N};
    Tensor a = randn(sa, 1, dt), b = randn(sb, 2, dt);
    if (c.bt > 0) {
      sc.insert(sc.begin(), c.bt);
      if (!c.a2d) a = randn({c.bt, sa[0], sa[1]}, 1, dt);
      // A batch stride of 0 broadcasts b over the batch.
      b = c.b_bcast ? b.unsqueeze(0).expand({c.bt, sb[0], sb[1]}) : randn({c.bt, sb[0], sb[1]}, 2, dt);
    }
    Tensor c0 = randn(sc, 3, dt);
    Tensor fast = c0.clone(), ref = c0.clone();
    cpu::the_cpu_backend().gemm(fast, a, b, c.ta, c.tb, c.alpha, c.beta);
    cpu::ref::gemm_ref(ref, a, b, c.ta, c.tb, c.alpha, c.beta);
    EXPECT_TRUE(allclose(fast, ref, atol, rtol));
  }
}

TEST(GemmTest, FastMatchesReferenceF64) {
  // f64 BLAS vs double accumulation in another order: K <= 130 terms of size ~1 -> ~1e-14.
  check_gemm_vs_ref(DType::F64, 1e-12, 1e-12);
}

TEST(GemmTest, FastMatchesReferenceF32) {
  // f32 BLAS vs a double-accumulated reference rounded once: sums of K <= 130 products of N(0,1)
  // values have magnitude ~sqrt(K) ~ 11 and a rounding error ~ K * 6e-8 * 11 / 4 worst-case
  // typical ~2e-5; 1e-4 absolute leaves headroom without hiding a wrong element (errors are O(1)).
  check_gemm_vs_ref(DType::F32, 1e-4, 1e-5);
}

TEST(GemmTest, BetaZeroIgnoresGarbageInC) {
  Tensor a = randn({4, 3}, 1), b = randn({3, 5}, 2);
  Tensor c = Tensor::full({4, 5}, std::nan(""), DType::F64);
  Tensor ref = Tensor::zeros({4, 5}, DType::F64);
  cpu::the_cpu_backend().gemm(c, a, b, false, false, 1.0, 0.0);
  cpu::ref::gemm_ref(ref, a, b, false, false, 1.0, 0.0);
  EXPECT_TRUE(allclose(c, ref, 1e-14, 0));  // f64, K=3: exact up to one rounding
}

TEST(GemmTest, RejectsMismatchedShapes) {
  Tensor a = randn({4, 3}, 1), b = randn({4, 5}, 2), c = Tensor::empty({4, 5}, DType::F64);
  EXPECT_THROW(cpu::the_cpu_backend().gemm(c, a, b, false, false, 1.0, 0.0), ValueError);
  EXPECT_THROW(matmul(a, b), ValueError);
  EXPECT_THROW(linear(a, b), ValueError);
  EXPECT_THROW(bmm(a, b), ValueError);
  EXPECT_THROW(matmul(a, b.to(DType::F32)), ValueError);
}

TEST(MatmulTest, ForwardMatchesReferenceOnManyLayouts) {
  // matmul of 2-D slices of broadcast/transposed stacks vs the reference GEMM, element by element.
  Tensor a = randn({2, 1, 5, 4}, 1), b = randn({3, 6, 4}, 2);
  Tensor y = matmul(a, b.transpose(-1, -2));  // (2,3,5,6), b transposed, batch broadcast both ways
  ASSERT_EQ(y.shape(), (Shape{2, 3, 5, 6}));
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < 3; ++j) {
      Tensor ref = Tensor::empty({5, 6}, DType::F64);
      cpu::ref::gemm_ref(ref, a.select(0, i).select(0, 0).contiguous(),
                         b.select(0, j).contiguous(), false, true, 1.0, 0.0);
      EXPECT_TRUE(allclose(y.select(0, i).select(0, j), ref, 1e-13, 1e-13));  // f64, K=4
    }
  }
}

TEST(MatmulTest, Gradcheck2D) {
  auto fn = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(fn, {randn({3, 4}, 1).set_requires_grad(), randn({4, 5}, 2).set_requires_grad()}));
}

TEST(MatmulTest, GradcheckTransposedViews) {
  auto fn = [](const std::vector<Tensor>& in) { return matmul(in[0].t(), in[1].t()); };
  EXPECT_TRUE(gradcheck(fn, {randn({4, 3}, 1).set_requires_grad(), randn({5, 4}, 2).set_requires_grad()}));
  // A column slice is neither row- nor column-major: it is copied before the GEMM.
  auto fn2 = [](const std::vector<Tensor>& in) {
    return matmul(in[0].slice(1, 0, 6, 2), in[1].transpose(1, 2));
  };
  EXPECT_TRUE(gradcheck(fn2, {randn({3, 6}, 3).set_requires_grad(), randn({2, 4, 3}, 4).set_requires_grad()}));
}

TEST(MatmulTest, GradcheckBatched) {
  auto fn = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(fn, {randn({2, 3, 4}, 1).set_requires_grad(), randn({2, 4, 2}, 2).set_requires_grad()}));
  auto fnt = [](const std::vector<Tensor>& in) {
    return matmul(in[0].transpose(1, 2), in[1].transpose(1, 2));
  };
  EXPECT_TRUE(gradcheck(fnt, {randn({2, 4, 3}, 1).set_requires_grad(), randn({2, 2, 4}, 2).set_requires_grad()}));
}

TEST(MatmulTest, GradcheckBroadcastBatch) {
  auto fn = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  // weight-like 2-D b shared by every batch; 2-D a against a batched b
  EXPECT_TRUE(gradcheck(fn, {randn({2, 3, 4}, 1).set_requires_grad(), randn({4, 2}, 2).set_requires_grad()}));
  EXPECT_TRUE(gradcheck(fn, {randn({3, 4}, 1).set_requires_grad(), randn({2, 4, 2}, 2).set_requires_grad()}));
  // size-1 batch dims broadcast against each other
  EXPECT_TRUE(gradcheck(fn, {randn({2, 1, 3, 2}, 1).set_requires_grad(), randn({1, 3, 2, 2}, 2).set_requires_grad()}));
  // 1-D operands (vector-matrix, matrix-vector)
  EXPECT_TRUE(gradcheck(fn, {randn({4}, 1).set_requires_grad(), randn({2, 4, 3}, 2).set_requires_grad()}));
  EXPECT_TRUE(gradcheck(fn, {randn({3, 4}, 1).set_requires_grad(), randn({4}, 2).set_requires_grad()}));
}

TEST(MatmulTest, GradcheckBmm) {
  auto fn = [](const std::vector<Tensor>& in) { return bmm(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(fn, {randn({3, 2, 4}, 1).set_requires_grad(), randn({3, 4, 5}, 2).set_requires_grad()}));
  EXPECT_THROW(bmm(randn({3, 2, 4}, 1), randn({2, 4, 5}, 2)), ValueError);
}

TEST(LinearTest, GradcheckWithAndWithoutBias) {
  auto fb = [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); };
  auto fn = [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); };
  Tensor x2 = randn({4, 3}, 1).set_requires_grad(), x3 = randn({2, 3, 3}, 4).set_requires_grad();
  Tensor w = randn({5, 3}, 2).set_requires_grad(), b = randn({5}, 3).set_requires_grad();
  EXPECT_TRUE(gradcheck(fb, {x2, w, b}));
  EXPECT_TRUE(gradcheck(fb, {x3, w, b}));
  EXPECT_TRUE(gradcheck(fn, {x3, w}));
  EXPECT_TRUE(gradcheck(fb, {randn({3}, 5).set_requires_grad(), w, b}));  // 1-D input
  // Transposed input (non-contiguous leading dims) and transposed weight view.
  auto ft = [](const std::vector<Tensor>& in) {
    return linear(in[0].transpose(0, 1), in[1].t(), in[2]);
  };
  EXPECT_TRUE(gradcheck(ft, {randn({3, 2, 3}, 6).set_requires_grad(), randn({3, 5}, 7).set_requires_grad(), b}));
}

TEST(LinearTest, ForwardEqualsMatmulPlusBias) {
  Tensor x = randn({2, 3, 4}, 1), w = randn({5, 4}, 2), b = randn({5}, 3);
  Tensor y = linear(x, w, b), y0 = matmul(x, w.t());
  std::vector<double> vy = y.to_vector<double>(), v0 = y0.to_vector<double>();
  std::vector<double> vb = b.to_vector<double>();
  for (size_t i = 0; i < vy.size(); ++i) EXPECT_NEAR(vy[i], v0[i] + vb[i % 5], 1e-14);  // one add
}

// ---- goldens vs PyTorch (tests/golden/gen_linear_attention.py) --------------------------------

struct GoldenTol { double atol, rtol; };
GoldenTol tol_for(DType dt) {
  // TESTPLAN U1: f64 1e-12; f32 atol 1e-6 rtol 1e-5 (inputs are scaled so that |y| ~ 1).
  return dt == DType::F64 ? GoldenTol{1e-12, 1e-12} : GoldenTol{1e-6, 1e-5};
}

void check_golden_linear(const std::string& dt_name, DType dt) {
  testing::GoldenFile g("linear_attention.h5");
  const GoldenTol t = tol_for(dt);
  const std::string p = "linear_" + dt_name + "/";
  Tensor x = g.get(p + "x").set_requires_grad(), w = g.get(p + "w").set_requires_grad();
  Tensor b = g.get(p + "b").set_requires_grad();
  Tensor y = linear(x, w, b);
  EXPECT_TRUE(allclose(y, g.get(p + "y"), t.atol, t.rtol));
  y.backward(g.get(p + "dy"));
  EXPECT_TRUE(allclose(x.grad(), g.get(p + "dx"), t.atol, t.rtol));
  EXPECT_TRUE(allclose(w.grad(), g.get(p + "dw"), t.atol, t.rtol));
  EXPECT_TRUE(allclose(b.grad(), g.get(p + "db"), t.atol, t.rtol));

  const std::string m = "matmul_" + dt_name + "/";
  Tensor a = g.get(m + "a").set_requires_grad(), bb = g.get(m + "b").set_requires_grad();
  Tensor z = matmul(a, bb.transpose(-1, -2));
  EXPECT_TRUE(allclose(z, g.get(m + "y"), t.atol, t.rtol));
  z.backward(g.get(m + "dy"));
  EXPECT_TRUE(allclose(a.grad(), g.get(m + "da"), t.atol, t.rtol));
  EXPECT_TRUE(allclose(bb.grad(), g.get(m + "db"), t.atol, t.rtol));
}

TEST(LinearTest, MatchesPyTorchF32) { check_golden_linear("f32", DType::F32); }
TEST(LinearTest, MatchesPyTorchF64) { check_golden_linear("f64", DType::F64); }

// gelu_linear keeps only its input for backward (gelu recomputed there): gradcheck in f64 (with
// and without bias, a transposed input view) and bitwise equality with linear(gelu(a)) in f32.
TEST(GeluLinearTest, GradcheckAndEqualsTheComposition) {
  auto fb = [](const std::vector<Tensor>& in) { return gelu_linear(in[0], in[1], in[2]); };
  auto fn = [](const std::vector<Tensor>& in) { return gelu_linear(in[0], in[1]); };
  auto ft = [](const std::vector<Tensor>& in) { return gelu_linear(in[0].transpose(0, 1), in[1]); };
  Tensor a = randn({2, 3, 4}, 1).set_requires_grad(), w = randn({5, 4}, 2).set_requires_grad();
  Tensor b = randn({5}, 3).set_requires_grad();
  EXPECT_TRUE(gradcheck(fb, {a, w, b}));
  EXPECT_TRUE(gradcheck(fn, {a, w}));
  EXPECT_TRUE(gradcheck(ft, {randn({3, 2, 4}, 4).set_requires_grad(), w}));

  Tensor a32 = randn({2, 3, 4}, 5, DType::F32), w32 = randn({5, 4}, 6, DType::F32);
  Tensor b32 = randn({5}, 7, DType::F32), up = randn({2, 3, 5}, 8, DType::F32);
  std::vector<Tensor> x = {a32.clone().set_requires_grad(true), w32.clone().set_requires_grad(true),
                           b32.clone().set_requires_grad(true)};
  std::vector<Tensor> y = {a32.clone().set_requires_grad(true), w32.clone().set_requires_grad(true),
                           b32.clone().set_requires_grad(true)};
  Tensor fused = gelu_linear(x[0], x[1], x[2]), plain = linear(gelu(y[0]), y[1], y[2]);
  EXPECT_EQ(fused.to_vector<float>(), plain.to_vector<float>());
  sum(fused * up).backward();
  sum(plain * up).backward();
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(x[i].grad().to_vector<float>(), y[i].grad().to_vector<float>()) << "input " << i;
}

}  // namespace
}  // namespace loom

// CUDA vs CPU backend for the elementwise, copy, random, reduction and GEMM kernels (TESTPLAN G-1):
// the same random inputs go through loom::cpu_backend() and loom::cuda_backend(); fp32 results must
// agree to NMSE <= 1e-7 (TF32 off), bf16 to the calibrated bound in GpuCompare.h, and copies,
// comparisons and Philox random fills must agree exactly.
#include <gtest/gtest.h>

#include "core/backend/Backend.h"
#include "tests/gpu/GpuCompare.h"

namespace loom::gputest {
namespace {

Backend& cpu() { return cpu_backend(); }
Backend& cuda() { return *cuda_backend(); }

// Input for op `op`: positive where the op needs it (log, sqrt, rsqrt, pow, rdiv).
Tensor unary_input(UnaryOp op, const Shape& shape, uint64_t seed) {
  Tensor x = randn(shape, seed);
  bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt ||
                  op == UnaryOp::PowScalar || op == UnaryOp::RDivScalar;
  if (!positive) return x;
  Tensor y = Tensor::empty(shape);
  cpu().unary(UnaryOp::Abs, y, x, 0, 0);
  cpu().unary(UnaryOp::AddScalar, y, y, 0.5, 0);
  return y;
}

TEST(CudaElementwiseTest, BackendIsAvailable) {
  LOOM_REQUIRE_GPU();
  EXPECT_STREQ(cuda().name(), "cuda");
  EXPECT_EQ(cuda().device_type(), DeviceType::CUDA);
}

TEST(CudaElementwiseTest, UnaryF32MatchesCpuOnTransposedInput) {
  LOOM_REQUIRE_GPU();
  for (int o = 0; o <= int(UnaryOp::Clamp); ++o) {
    auto op = UnaryOp(o);
    Tensor x = unary_input(op, {37, 53}, 10 + o).t();  // non-contiguous view
    Tensor want = Tensor::empty({53, 37}), got = Tensor::empty({53, 37}, DType::F32, Device::cuda());
    double alpha = op == UnaryOp::Clamp ? -0.5 : 1.7, beta = 0.8;
    cpu().unary(op, want, x, alpha, beta);
    cuda().unary(op, got, gpu(x.t()).t(), alpha, beta);  // the same transposed view on the GPU
    EXPECT_TRUE(nmse_le(got, want, kNmseF32)) << unary_op_name(op);
  }
}

TEST(CudaElementwiseTest, UnaryBf16WithinBound) {
  LOOM_REQUIRE_GPU();
  for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Gelu, UnaryOp::Sigmoid,
                     UnaryOp::MulScalar, UnaryOp::Sqrt}) {
    Tensor x = bf16_exact(unary_input(op, {64, 40}, 3));
    Tensor want = Tensor::empty({64, 40});
    cpu().unary(op, want, x, 1.25, 0);
    Tensor got = Tensor::empty({64, 40}, DType::BF16, Device::cuda());
    cuda().unary(op, got, gpu(x.to(DType::BF16)), 1.25, 0);
    EXPECT_TRUE(nmse_le(got, want, kNmseBf16)) << unary_op_name(op);
  }
}

TEST(CudaElementwiseTest, BinaryF32WithBroadcastMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor a = randn({16, 33}, 1), b_row = randn({1, 33}, 2, 1.5, 0.5);
  Tensor b = b_row.expand({16, 33});  // stride-0 broadcast
  for (int o = 0; o <= int(BinaryOp::TanhBackward); ++o) {
    auto op = BinaryOp(o);
    bool cmp = op >= BinaryOp::Eq && op <= BinaryOp::Ge;
    Tensor aa = op == BinaryOp::Pow ? bf16_exact(randn({16, 33}, 5, 2.0, 0.3)) : a;
    DType odt = cmp ? DType::Bool : DType::F32;
    Tensor want = Tensor::empty({16, 33}, odt), got = Tensor::empty({16, 33}, odt, Device::cuda());
    cpu().binary(op, want, aa, b);
    cuda().binary(op, got, gpu(aa), gpu(b_row).expand({16, 33}));
    if (cmp) {
      EXPECT_TRUE(equal_values(got, want)) << binary_op_name(op);
    } else {
      EXPECT_TRUE(nmse_le(got, want, kNmseF32)) << binary_op_name(op);
    }
  }
}

TEST(CudaElementwiseTest, WhereAndFillMatchCpu) {
  LOOM_REQUIRE_GPU();
  Tensor a = randn({8, 9}, 1), b = randn({8, 9}, 2);
  Tensor cond = Tensor::empty({8, 9}, DType::Bool);
  cpu().binary(BinaryOp::Gt, cond, a, b);
  Tensor want = Tensor::empty({8, 9}), got = Tensor::empty({8, 9}, DType::F32, Device::cuda());
  cpu().where(want, cond, a, b);
  cuda().where(got, gpu(cond), gpu(a), gpu(b));
  EXPECT_TRUE(equal_values(got, want));
  Tensor f = Tensor::empty({5, 7}, DType::BF16, Device::cuda());
  cuda().fill(f, 2.5);
  EXPECT_TRUE(equal_values(f, Tensor::full({5, 7}, 2.5)));
}

TEST(CudaElementwiseTest, CopyConvertsEveryDtypeLikeCpu) {
  LOOM_REQUIRE_GPU();
  Tensor base = randn({12, 10}, 7, 0.0, 40.0);
  for (DType src : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64,
                    DType::Bool}) {
    for (DType dst : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64,
                      DType::Bool}) {
      Tensor s = base.to(src).t();  // strided source
      Tensor want = Tensor::empty({10, 12}, dst), got = Tensor::empty({10, 12}, dst, Device::cuda());
      cpu().copy(want, s);
      cuda().copy(got, gpu(base.to(src)).t());
      EXPECT_TRUE(equal_values(got, want)) << dtype_name(src) << " -> " << dtype_name(dst);
    }
  }
}

TEST(CudaElementwiseTest, PhiloxFillsAreIdenticalOnCpuAndCuda) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::F64}) {
    for (RandomKind kind : {RandomKind::Uniform, RandomKind::Normal, RandomKind::Bernoulli}) {
      Tensor want = Tensor::empty({1000, 37}, dt), got = Tensor::empty({1000, 37}, dt, Device::cuda());
      double a = kind == RandomKind::Bernoulli ? 0.3 : -1.5, b = 2.25;
      cpu().fill_random(want, kind, 1234, 99, a, b);
      cuda().fill_random(got, kind, 1234, 99, a, b);
      if (dt == DType::F64 && kind == RandomKind::Normal) {
        // NB: Box-Muller calls log and cos; CUDA's and glibc's double versions are both within
        // 1 ulp but not always the same ulp, so f64 normals agree to a few ulps (rel ~1e-15),
        // not bitwise. Uniform, Bernoulli and every f32 fill are bitwise equal.
        EXPECT_TRUE(nmse_le(got, want, 1e-28));
      } else {
        EXPECT_TRUE(equal_values(got, want)) << dtype_name(dt) << " kind " << int(kind);
      }
    }
  }
}

TEST(CudaElementwiseTest, ReduceMatchesCpuWithArgIndices) {
  LOOM_REQUIRE_GPU();
  struct Case { int64_t outer, n, inner; };
  for (Case c : {Case{7, 1000, 1}, Case{3, 50, 17}, Case{1, 4097, 1}}) {
    Tensor x = randn({c.outer, c.n, c.inner}, 11);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      Tensor want = Tensor::empty({c.outer, c.inner}), wi = Tensor::empty({c.outer, c.inner}, DType::I64);
      Tensor got = Tensor::empty({c.outer, c.inner}, DType::F32, Device::cuda());
      Tensor gi = Tensor::empty({c.outer, c.inner}, DType::I64, Device::cuda());
      bool idx = op != ReduceOp::Sum;
      cpu().reduce(op, want, idx ? wi : Tensor(), x, c.outer, c.n, c.inner);
      cuda().reduce(op, got, idx ? gi : Tensor(), gpu(x), c.outer, c.n, c.inner);
      EXPECT_TRUE(nmse_le(got, want, kNmseF32)) << int(op) << " n=" << c.n;
      if (idx) {
        EXPECT_TRUE(equal_values(gi, wi));
      }
      Tensor gb = Tensor::empty({c.outer, c.inner}, DType::BF16, Device::cuda());
      Tensor xb = bf16_exact(x);
      cpu().reduce(op, want, Tensor(), xb, c.outer, c.n, c.inner);
      cuda().reduce(op, gb, Tensor(), gpu(xb.to(DType::BF16)), c.outer, c.n, c.inner);
      EXPECT_TRUE(nmse_le(gb, want, kNmseBf16)) << "bf16 " << int(op);
    }
  }
}

TEST(CudaElementwiseTest, ReduceIsBitwiseDeterministic) {
  LOOM_REQUIRE_GPU();
  Tensor x = gpu(randn({4, 100000}, 3));
  Tensor a = Tensor::empty({4, 1}, DType::F32, Device::cuda()), b = a.clone();
  cuda().reduce(ReduceOp::Sum, a, Tensor(), x, 4, 100000, 1);
  cuda().reduce(ReduceOp::Sum, b, Tensor(), x, 4, 100000, 1);
  EXPECT_TRUE(equal_values(a, b));
}

struct GemmCase {
  int64_t batch, M, N, K;
  bool ta, tb;
  bool bcast_b;  // b has batch stride 0 (one weight for every batch)
  double alpha, beta;
};

Shape op_shape(int64_t batch, int64_t r, int64_t c, bool t) {
  Shape s = t ? Shape{c, r} : Shape{r, c};
  if (batch > 0) s.insert(s.begin(), batch);
  return s;
}

void run_gemm_case(const GemmCase& g, DType dt, double bound) {
  int64_t bt = g.batch;
  Tensor a = randn(op_shape(bt, g.M, g.K, g.ta), 21);
  Tensor b = g.bcast_b ? randn(op_shape(0, g.K, g.N, g.tb), 22)
                       : randn(op_shape(bt, g.K, g.N, g.tb), 22);
  Tensor c0 = randn(op_shape(bt, g.M, g.N, false), 23);
  if (dt == DType::BF16) { a = bf16_exact(a); b = bf16_exact(b); c0 = bf16_exact(c0); }
  if (dt == DType::F64) { a = a.to(dt); b = b.to(dt); c0 = c0.to(dt); }  // f64 reference
  Tensor b_use = b;
  Tensor bg = gpu(b.to(dt));
  if (g.bcast_b && bt > 0) {
    Shape s = b.shape();
    s.insert(s.begin(), bt);
    b_use = b.unsqueeze(0).expand(s);
    bg = bg.unsqueeze(0).expand(s);
  }
  Tensor want = c0.clone();
  cpu().gemm(want, a, b_use, g.ta, g.tb, g.alpha, g.beta);
  Tensor got = gpu(c0.to(dt));
  cuda().gemm(got, gpu(a.to(dt)), bg, g.ta, g.tb, g.alpha, g.beta);
  EXPECT_TRUE(nmse_le(got, want, bound)) << dtype_name(dt) << " batch " << bt << " M" << g.M
                                         << " N" << g.N << " K" << g.K << " ta" << g.ta << " tb"
                                         << g.tb << " bcast" << g.bcast_b;
}

TEST(CudaElementwiseTest, GemmMatchesCpuF32Bf16F64) {
  LOOM_REQUIRE_GPU();
  std::vector<GemmCase> cases = {
      {0, 64, 48, 32, false, false, false, 1.0, 0.0}, {0, 33, 17, 65, true, false, false, 0.5, 1.0},
      {0, 20, 31, 7, false, true, false, 1.0, 0.5},   {0, 9, 130, 40, true, true, false, 2.0, 0.0},
      {3, 16, 24, 40, false, true, false, 1.0, 0.0},  {4, 12, 20, 36, false, true, true, 1.0, 1.0},
      {2, 12, 20, 36, true, false, true, 1.0, 0.0},   {5, 1, 64, 64, false, false, false, 1.0, 0.0}};
  for (const GemmCase& g : cases) {
    run_gemm_case(g, DType::F32, kNmseF32);
    run_gemm_case(g, DType::BF16, kNmseBf16);
    // f64 on both sides: only the summation order differs (~1e-32); 1e-24 is far above that.
    run_gemm_case(g, DType::F64, 1e-24);
  }
}

}  // namespace
}  // namespace loom::gputest

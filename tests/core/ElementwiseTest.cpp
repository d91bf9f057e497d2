// Elementwise ops and kernels: forward values, broadcasting, dtype rules and errors, gradcheck of
// every differentiable op (contiguous, transposed and broadcast inputs), fast AVX2 kernels vs the
// scalar reference on odd sizes and strides, vectorised exp/tanh vs std::, and golden values from
// PyTorch (tests/golden/gen_elementwise.py). TESTPLAN U1/U2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <limits>
#include <string>

#include "core/autograd/GradMode.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/ElementwiseRef.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "tests/support/GradCheck.h"
#include "tests/support/Ulp.h"
#include "tests/support/Golden.h"

namespace loom {
namespace {

using testing::allclose;
using testing::gradcheck;
using testing::ulp_error;

Tensor vec_f64(std::vector<double> v, const Shape& s) { return Tensor::from_vector(v, s); }

// ---- forward basics ---------------------------------------------------------------------------

TEST(ElementwiseTest, ArithmeticBroadcastsLikeNumpy) {
  Tensor a = vec_f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = vec_f64({10, 20, 30}, {3});
  EXPECT_EQ(add(a, b).to_vector<double>(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(sub(a, b).to_vector<double>(), (std::vector<double>{-9, -18, -27, -6, -15, -24}));
  EXPECT_EQ(mul(a, b).to_vector<double>(), (std::vector<double>{10, 40, 90, 40, 100, 180}));
  EXPECT_EQ(div(b, a).to_vector<double>(), (std::vector<double>{10, 10, 10, 2.5, 4, 5}));
  Tensor col = vec_f64({1, 2}, {2, 1});
  Tensor y = add(col, b);  // (2,1) + (3) -> (2,3)
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{11, 21, 31, 12, 22, 32}));
  EXPECT_EQ((a * 2.0 + 1.0).to_vector<double>(), (std::vector<double>{3, 5, 7, 9, 11, 13}));
  EXPECT_EQ((1.0 - a).to_vector<double>(), (std::vector<double>{0, -1, -2, -3, -4, -5}));
  EXPECT_EQ((a / 2.0).to_vector<double>(), (std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3}));
  EXPECT_EQ((6.0 / a).to_vector<double>(), (std::vector<double>{6, 3, 2, 1.5, 1.2, 1}));
  EXPECT_EQ((-a).to_vector<double>(), (std::vector<double>{-1, -2, -3, -4, -5, -6}));
}

TEST(ElementwiseTest, UnaryMatchesStdOnF64) {
  std::vector<double> v = {-3.5, -1.25, -0.5, 0.25, 0.75, 2.0, 4.5};
  Tensor x = vec_f64(v, {7});
  auto check = [&](Tensor y, const std::function<double(double)>& f, const char* name) {
    std::vector<double> got = y.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(got[i], f(v[i])) << name << " at " << v[i];
  };
  check(exp(x), [](double t) { return std::exp(t); }, "exp");
  check(tanh(x), [](double t) { return std::tanh(t); }, "tanh");
  check(abs(x), [](double t) { return std::fabs(t); }, "abs");
  check(relu(x), [](double t) { return t > 0 ? t : 0.0; }, "relu");
  check(square(x), [](double t) { return t * t; }, "square");
  check(sigmoid(x), [](double t) { return cpu::ref::sigmoid(t); }, "sigmoid");
  check(clamp(x, -1.0, 1.0), [](double t) { return std::min(std::max(t, -1.0), 1.0); }, "clamp");
  check(pow(abs(x), 1.5), [](double t) { return std::pow(std::fabs(t), 1.5); }, "pow");
  check(log(abs(x)), [](double t) { return std::log(std::fabs(t)); }, "log");
  check(sqrt(abs(x)), [](double t) { return std::sqrt(std::fabs(t)); }, "sqrt");
  check(rsqrt(abs(x)), [](double t) { return 1.0 / std::sqrt(std::fabs(t)); }, "rsqrt");
  check(gelu(x), [](double t) { return cpu::ref::gelu(t); }, "gelu");
}

TEST(ElementwiseTest, GeluMatchesClosedFormAtKnownPoints) {
  // gelu(1) with the tanh approximation: 0.5 * (1 + tanh(sqrt(2/pi) * 1.044715)).
  double expect = 0.5 * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * 1.044715));
  EXPECT_DOUBLE_EQ(gelu(vec_f64({1.0}, {1})).item(), expect);
  EXPECT_EQ(gelu(vec_f64({0.0}, {1})).item(), 0.0);
}

TEST(ElementwiseTest, ComparisonsWhereAndMaskedFill) {
  Tensor a = vec_f64({1, 2, 3, 4}, {4});
  Tensor b = vec_f64({2, 2, 2, 2}, {4});
  EXPECT_EQ(lt(a, b).dtype(), DType::Bool);
  EXPECT_EQ(lt(a, b).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0, 0}));
  EXPECT_EQ(le(a, b).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0, 0}));
  EXPECT_EQ(gt(a, b).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(ge(a, b).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1, 1}));
  EXPECT_EQ(eq(a, b).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 0}));
  EXPECT_EQ(ne(a, b).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 1}));
  Tensor w = where(gt(a, b), a, b);
  EXPECT_EQ(w.to_vector<double>(), (std::vector<double>{2, 2, 3, 4}));
  Tensor m = masked_fill(a, eq(a, b), -1.0);
  EXPECT_EQ(m.to_vector<double>(), (std::vector<double>{1, -1, 3, 4}));
  EXPECT_EQ(maximum(a, b).to_vector<double>(), (std::vector<double>{2, 2, 3, 4}));
  EXPECT_EQ(minimum(a, b).to_vector<double>(), (std::vector<double>{1, 2, 2, 2}));
}

TEST(ElementwiseTest, IntegerAndBoolDtypes) {
  Tensor a = Tensor::from_vector<int64_t>({1, -2, 3}, {3});
  Tensor b = Tensor::from_vector<int64_t>({4, 5, -6}, {3});
  EXPECT_EQ(add(a, b).to_vector<int64_t>(), (std::vector<int64_t>{5, 3, -3}));
  EXPECT_EQ(mul(a, b).to_vector<int64_t>(), (std::vector<int64_t>{4, -10, -18}));
  EXPECT_EQ(abs(a).to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(maximum(a, b).to_vector<int64_t>(), (std::vector<int64_t>{4, 5, 3}));
  EXPECT_EQ(mul(a, 3.0).to_vector<int64_t>(), (std::vector<int64_t>{3, -6, 9}));
  Tensor i32 = Tensor::from_vector<int32_t>({7, 8}, {2});
  EXPECT_EQ(sub(i32, i32).to_vector<int32_t>(), (std::vector<int32_t>{0, 0}));
  Tensor t = Tensor::from_vector<bool>({true, false}, {2});
  EXPECT_EQ(eq(t, t).to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(where(t, i32, i32 * 2.0).to_vector<int32_t>(), (std::vector<int32_t>{7, 16}));
}

TEST(ElementwiseTest, ErrorsNameOpAndDtypes) {
  Tensor f = Tensor::ones({2});
  Tensor d = Tensor::ones({2}, DType::F64);
  Tensor i = Tensor::ones({2}, DType::I64);
  Tensor t = Tensor::ones({2}, DType::Bool);
  auto expect_msg = [](const std::function<void()>& fn, const std::string& want) {
    try {
      fn();
      ADD_FAILURE() << "no throw, wanted " << want;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  expect_msg([&] { add(f, d); }, "f32 and f64");
  expect_msg([&] { exp(i); }, "exp does not support dtype i64 on cpu");
  expect_msg([&] { div(i, i); }, "div does not support dtype i64");
  expect_msg([&] { add(t, t); }, "add does not support dtype bool");
  expect_msg([&] { add(Tensor::ones({2, 3}), Tensor::ones({4})); }, "add");
  expect_msg([&] { where(f, f, f); }, "bool condition");
  expect_msg([&] { sum_to(Tensor::ones({2, 3}), {4}); }, "sum_to");
}

TEST(ElementwiseTest, InPlaceAddAliasesOutputAndInput) {
  Tensor x = vec_f64({1, 2, 3}, {3});
  {
    NoGradGuard g;
    x.add_(vec_f64({1, 1, 1}, {3}), 2.0);
    x.mul_(0.5);
  }
  EXPECT_EQ(x.to_vector<double>(), (std::vector<double>{1.5, 2, 2.5}));
  Tensor y = Tensor::ones({64, 33});
  {
    NoGradGuard g;
    y.add_(Tensor::ones({33}));  // broadcast, f32 fast path, in place
  }
  for (float v : y.to_vector<float>()) ASSERT_EQ(v, 2.0f);
}

TEST(ElementwiseTest, EmptyTensorsAreFine) {
  Tensor e = Tensor::ones({0, 3});
  EXPECT_EQ(exp(e).shape(), (Shape{0, 3}));
  EXPECT_EQ(add(e, Tensor::ones({3})).shape(), (Shape{0, 3}));
}

// ---- gradcheck (TESTPLAN U2: f64, eps 1e-6, atol 1e-5, rtol 1e-3 = GradCheckOptions defaults) ---

using UnaryFnT = std::function<Tensor(const Tensor&)>;

// Input with every |x| in [lo, lo + 1] and random signs (or only positive), away from kinks.
Tensor away_from_zero(const Shape& s, uint64_t seed, double lo, bool positive) {
  Generator gen(seed);
  Tensor mag = add(Tensor::rand(s, gen, DType::F64), lo);
  if (positive) return mag;
  Tensor sign = sub(mul(gt(Tensor::rand(s, gen, DType::F64), Tensor::scalar(0.5, DType::F64))
                            .to(DType::F64),
                        2.0),
                    1.0);
  return mul(mag, sign);
}

// Checks f on a contiguous (3,4) input, on a transposed view of a (4,3) leaf, and on a (3,4)
// broadcast of a (4) leaf.
void gradcheck_unary(const UnaryFnT& f, double lo, bool positive) {
  Tensor x = away_from_zero({3, 4}, 11, lo, positive).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x}));
  Tensor xt = away_from_zero({4, 3}, 12, lo, positive).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0].t()); }, {xt}));
  Tensor xb = away_from_zero({4}, 13, lo, positive).set_requires_grad(true);
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return f(in[0].expand({3, 4})); }, {xb}));
}

TEST(ElementwiseGradTest, UnaryOps) {
  gradcheck_unary([](const Tensor& x) { return neg(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return exp(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return log(x); }, 0.5, true);
  gradcheck_unary([](const Tensor& x) { return tanh(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return sqrt(x); }, 0.5, true);
  gradcheck_unary([](const Tensor& x) { return rsqrt(x); }, 0.5, true);
  gradcheck_unary([](const Tensor& x) { return relu(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return gelu(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return sigmoid(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return square(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return abs(x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return clamp(x, -0.7, 0.8); }, 0.1, false);
}

TEST(ElementwiseGradTest, ScalarOps) {
  gradcheck_unary([](const Tensor& x) { return add(x, 1.5); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return sub(x, 1.5); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return rsub(2.0, x); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return mul(x, -3.0); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return div(x, 4.0); }, 0.1, false);
  gradcheck_unary([](const Tensor& x) { return rdiv(2.0, x); }, 0.5, false);
  gradcheck_unary([](const Tensor& x) { return pow(x, 2.5); }, 0.5, true);
  gradcheck_unary([](const Tensor& x) { return pow(x, 3.0); }, 0.1, false);
}

using BinaryFnT = std::function<Tensor(const Tensor&, const Tensor&)>;

// a (3,4) contiguous vs b: contiguous (3,4), transposed (4,3)->(3,4), broadcast (4) and (3,1).
void gradcheck_binary(const BinaryFnT& f, double lo, bool positive) {
  Tensor a = away_from_zero({3, 4}, 21, lo, positive).set_requires_grad(true);
  Tensor b = away_from_zero({3, 4}, 22, lo, positive).set_requires_grad(true);
  auto fn = [&](const std::vector<Tensor>& in) { return f(in[0], in[1]); };
  EXPECT_TRUE(gradcheck(fn, {a, b}));
  Tensor bt = away_from_zero({4, 3}, 23, lo, positive).set_requires_grad(true);
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[0], in[1].t()); },
                        {a, bt}));
  Tensor brow = away_from_zero({4}, 24, lo, positive).set_requires_grad(true);
  EXPECT_TRUE(gradcheck(fn, {a, brow}));
  EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return f(in[1], in[0]); },
                        {a, brow}));
  Tensor bcol = away_from_zero({3, 1}, 25, lo, positive).set_requires_grad(true);
  EXPECT_TRUE(gradcheck(fn, {a, bcol}));
}

TEST(ElementwiseGradTest, BinaryOps) {
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return add(a, b); }, 0.1, false);
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return sub(a, b); }, 0.1, false);
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return mul(a, b); }, 0.1, false);
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return div(a, b); }, 0.5, false);
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return pow(a, b); }, 0.5, true);
  // Random inputs: ties have probability zero, so maximum/minimum are away from their kink.
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return maximum(a, b); }, 0.1, false);
  gradcheck_binary([](const Tensor& a, const Tensor& b) { return minimum(a, b); }, 0.1, false);
}

TEST(ElementwiseGradTest, WhereAndMaskedFill) {
  Tensor a = away_from_zero({3, 4}, 31, 0.1, false).set_requires_grad(true);
  Tensor b = away_from_zero({4}, 32, 0.1, false).set_requires_grad(true);
  Tensor cond = gt(away_from_zero({3, 1}, 33, 0.1, false), Tensor::scalar(0.0, DType::F64));
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return where(cond, in[0].t().t(), in[1]); }, {a, b}));
  Tensor mask = gt(away_from_zero({3, 4}, 34, 0.1, false), Tensor::scalar(0.0, DType::F64));
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) { return masked_fill(in[0], mask, 3.0); }, {a}));
}

TEST(ElementwiseGradTest, TiesGoToFirstArgument) {
  Tensor a = vec_f64({1.0, 2.0}, {2}).set_requires_grad(true);
  Tensor b = vec_f64({1.0, 0.0}, {2}).set_requires_grad(true);
  sum(maximum(a, b)).backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{1, 1}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{0, 0}));
}

TEST(ElementwiseGradTest, PowGradWrtExponentIsLogTimesPower) {
  Tensor a = vec_f64({2.0, 3.0}, {2});
  Tensor b = vec_f64({1.5, 0.5}, {2}).set_requires_grad(true);
  sum(pow(a, b)).backward();
  std::vector<double> g = b.grad().to_vector<double>();
  EXPECT_DOUBLE_EQ(g[0], std::log(2.0) * std::pow(2.0, 1.5));
  EXPECT_DOUBLE_EQ(g[1], std::log(3.0) * std::pow(3.0, 0.5));
}

// ---- fast kernels vs the scalar reference ----------------------------------------------------------


// f32 error of the fast kernel against the f64 reference value `want`, in ulps, after removing an
// absolute slack `atol` that covers a known, justified error source (see the callers).
double excess_ulps(float got, double want, double atol) {
  double err = ulp_error(got, want);
  if (std::isinf(err) || atol == 0.0) return err;
  double ulp = std::fabs(double(got) - want) / std::max(err, 1e-300);
  return std::max(0.0, (std::fabs(double(got) - want) - atol) / ulp);
}


Tensor uniform(const Shape& s, uint64_t seed, double lo, double hi, DType dt = DType::F32) {
  Generator gen(seed);
  return Tensor::rand(s, gen, dt, Device::cpu(), lo, hi);
}

// Input range of each unary op for the kernel comparisons.
void domain(UnaryOp op, double& lo, double& hi) {
  lo = -12.0;
  hi = 12.0;
  if (op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt ||
      op == UnaryOp::PowScalar) {
    lo = 1e-3;
  }
}

constexpr UnaryOp kUnaryOps[] = {
    UnaryOp::Neg, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Tanh, UnaryOp::Sqrt, UnaryOp::Rsqrt,
    UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Abs, UnaryOp::Sigmoid, UnaryOp::Square,
    UnaryOp::AddScalar, UnaryOp::MulScalar, UnaryOp::PowScalar, UnaryOp::RSubScalar,
    UnaryOp::RDivScalar, UnaryOp::Clamp};

// f32 tolerance of the fast kernel against the f64 reference, in ulps of the exact result. The
// AVX2 exp/tanh are within 2-3 ulp (VecMathTest below); sigmoid/gelu compose one exp with a few
// correctly rounded operations, each adding <= 0.5 ulp; the std:: float functions the scalar path
// uses are within 1 ulp (glibc). 8 leaves headroom over the measured worst case of each op.
constexpr double kFastUlps = 8.0;

// Allowed ulps for unary op at input x. NB: gelu's f32 result also inherits the rounding of its
// f32 argument u = sqrt(2/pi)(x + 0.044715 x^3): four roundings give |du| <= 4 * 2^-24 |u|, and
// sigmoid(2u) in the far negative tail turns an error d in 2u into a relative error d (exp's
// condition number), i.e. up to 8|u| * 2^-24 <= 8|u| ulps. Any f32 evaluation, PyTorch's
// included, has this.
double allowed_ulps(UnaryOp op, double x) {
  if (op != UnaryOp::Gelu) return kFastUlps;
  double u = cpu::ref::kGeluBeta * (x + cpu::ref::kGeluKappa * x * x * x);
  return kFastUlps + 8.0 * std::fabs(u);
}

TEST(ElementwiseKernelTest, UnaryFastMatchesReferenceOnOddSizesAndStrides) {
  auto& be = cpu::the_cpu_backend();
  for (int64_t n : {1, 7, 8, 33, 1000003}) {
    for (UnaryOp op : kUnaryOps) {
      double lo, hi;
      domain(op, lo, hi);
      Tensor x = uniform({n}, uint64_t(n) + 7, lo, hi);
      Tensor y = Tensor::empty({n});
      be.unary(op, y, x, 1.75, 3.5);
      Tensor x64 = x.to(DType::F64), y64 = Tensor::empty({n}, DType::F64);
      cpu::ref::unary(op, y64, x64, 1.75, 3.5);
      std::vector<float> got = y.to_vector<float>();
      std::vector<double> want = y64.to_vector<double>();
      double worst = 0.0;
      std::vector<float> xv = x.to_vector<float>();
      for (size_t i = 0; i < got.size(); ++i)
        worst = std::max(worst, ulp_error(got[i], want[i]) / allowed_ulps(op, xv[i]));
      EXPECT_LE(worst, 1.0) << unary_op_name(op) << " n=" << n << " (error / allowed ulps)";
      // The f64 kernel runs the reference formula: bitwise equal.
      Tensor f64 = Tensor::empty({n}, DType::F64);
      be.unary(op, f64, x64, 1.75, 3.5);
      EXPECT_EQ(std::memcmp(f64.raw_data(), y64.raw_data(), size_t(n) * 8), 0) << unary_op_name(op);
    }
  }
}

TEST(ElementwiseKernelTest, StridedAndAliasedOutputsMatchReference) {
  auto& be = cpu::the_cpu_backend();
  Tensor base = uniform({33, 18}, 3, -4.0, 4.0);
  Tensor x = base.t().slice(0, 0, 18, 2);  // (9, 33), both strides non-unit
  for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Gelu, UnaryOp::Tanh, UnaryOp::MulScalar}) {
    Tensor out_base = Tensor::zeros({33, 9});
    Tensor out = out_base.t();  // non-contiguous output
    be.unary(op, out, x, 0.5, 0.0);
    Tensor want = Tensor::empty({9, 33}, DType::F64);
    cpu::ref::unary(op, want, x.to(DType::F64), 0.5, 0.0);
    std::vector<float> got = out.to_vector<float>();
    std::vector<double> w = want.to_vector<double>();
    std::vector<float> xv = x.to_vector<float>();
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_LE(ulp_error(got[i], w[i]), allowed_ulps(op, xv[i]))
          << unary_op_name(op) << " x=" << xv[i] << " got " << got[i] << " want " << w[i];
  }
  // out aliases the input exactly (in-place): same values as out of place.
  Tensor a = uniform({1000}, 4, -3.0, 3.0);
  Tensor expect = Tensor::empty({1000});
  be.unary(UnaryOp::Gelu, expect, a, 0, 0);
  be.unary(UnaryOp::Gelu, a, a, 0, 0);
  EXPECT_EQ(a.to_vector<float>(), expect.to_vector<float>());
}

constexpr BinaryOp kBinaryOps[] = {
    BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow, BinaryOp::Maximum,
    BinaryOp::Minimum, BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt,
    BinaryOp::Ge, BinaryOp::GeluBackward, BinaryOp::ReluBackward, BinaryOp::TanhBackward};

// Compares be.binary with the reference for a and b (already broadcast to one shape).
void expect_binary_matches(BinaryOp op, const Tensor& a, const Tensor& b, const std::string& tag) {
  auto& be = cpu::the_cpu_backend();
  const bool cmp = cpu::ref::is_comparison(op);
  Tensor out = Tensor::empty(a.shape(), cmp ? DType::Bool : a.dtype());
  be.binary(op, out, a, b);
  Tensor want = Tensor::empty(a.shape(), cmp ? DType::Bool : DType::F64);
  cpu::ref::binary(op, want, a.to(DType::F64), b.to(DType::F64));
  std::vector<double> g = out.to_vector<double>(), w = want.to_vector<double>();
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  double worst = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (cmp || a.dtype() == DType::F64) {
      ASSERT_EQ(g[i], w[i]) << binary_op_name(op) << " " << tag << " at " << i;
    } else if (op == BinaryOp::GeluBackward) {
      // gelu'(x) = s + x s (1-s) c(x) is a difference of terms of size up to 1 + |x| (it crosses 0
      // near x = -0.75), so f32 rounding of those terms gives an absolute error of a few
      // 2^-24 |dy| (1 + |x|) whatever the result's size.
      double atol = kFastUlps * std::ldexp(1.0, -24) * std::fabs(av[i]) * (1 + std::fabs(bv[i]));
      worst = std::max(worst, excess_ulps(float(g[i]), w[i], atol));
    } else {
      worst = std::max(worst, ulp_error(float(g[i]), w[i]));
    }
  }
  EXPECT_LE(worst, kFastUlps) << binary_op_name(op) << " " << tag;
}

TEST(ElementwiseKernelTest, BinaryFastMatchesReference) {
  for (BinaryOp op : kBinaryOps) {
    const bool pos = op == BinaryOp::Pow;
    for (int64_t n : {1, 7, 8, 33, 4099}) {
      Tensor a = uniform({n}, 40, pos ? 0.1 : -6.0, 6.0);
      Tensor b = uniform({n}, 41, pos ? 0.1 : -6.0, 6.0);
      expect_binary_matches(op, a, b, "contiguous n=" + std::to_string(n));
      expect_binary_matches(op, b, a.slice(0, 0, 1).expand({n}), "scalar b n=" + std::to_string(n));
    }
    Tensor a = uniform({20, 33}, 42, pos ? 0.1 : -6.0, 6.0);
    Tensor bias = uniform({33}, 43, pos ? 0.1 : -6.0, 6.0);
    expect_binary_matches(op, a, bias.expand({20, 33}), "row broadcast");
    Tensor col = uniform({20, 1}, 44, pos ? 0.1 : -6.0, 6.0);
    expect_binary_matches(op, a, col.expand({20, 33}), "column broadcast");
    Tensor at = uniform({33, 20}, 45, pos ? 0.1 : -6.0, 6.0).t();
    expect_binary_matches(op, a, at, "transposed");
    expect_binary_matches(op, a.to(DType::F64), at.to(DType::F64), "f64 transposed");
  }
}

TEST(ElementwiseKernelTest, ResultsDoNotDependOnThreadCount) {
  const int saved = cpu::num_threads();
  Tensor x = uniform({1000003}, 50, -5.0, 5.0);
  Tensor b = uniform({1000003}, 51, -5.0, 5.0);
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    runs.push_back(add(gelu(x), mul(x, b)).to_vector<float>());
  }
  cpu::set_num_threads(saved);
  EXPECT_EQ(runs[0], runs[1]);
}

// ---- golden values from PyTorch (tests/golden/gen_elementwise.py; TESTPLAN U1) ----------------------

struct GoldenTol {
  double atol, rtol;
};
// f32: the TESTPLAN U1 bound, checked against PyTorch's f64 values (a stricter test than f32 vs
// f32). f64, exactly rounded ops (+ - * /, neg, abs, relu, min/max, clamp, scalar ops, where):
// the TESTPLAN U1 bound 1e-12. f64, transcendental ops: glibc and PyTorch's libm/Sleef are each
// within 1 ulp (2.2e-16 relative), and the composite formulas (sigmoid, gelu and their backward,
// pow's log*a^b) chain up to ~10 such steps -> rtol 1e-14; our gelu uses x*sigmoid(2u) where
// PyTorch uses 0.5x(1+tanh u), which differ by up to |x| 2^-53 absolute -> atol 1e-15.
constexpr GoldenTol kF32Tol{1e-6, 1e-5};
constexpr GoldenTol kF64ExactTol{1e-12, 1e-12};
constexpr GoldenTol kF64TranscTol{1e-15, 1e-14};

struct GoldenUnary {
  const char* name;
  std::function<Tensor(const Tensor&)> fn;
  bool transcendental;
};

TEST(ElementwiseGoldenTest, UnaryOpsMatchPyTorchForwardAndBackward) {
  testing::GoldenFile g("elementwise.h5");
  const GoldenUnary ops[] = {
      {"neg", [](const Tensor& x) { return -x; }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, true},
      {"log", [](const Tensor& x) { return log(x); }, true},
      {"tanh", [](const Tensor& x) { return tanh(x); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, true},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, true},
      {"relu", [](const Tensor& x) { return relu(x); }, false},
      {"gelu", [](const Tensor& x) { return gelu(x); }, true},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, true},
      {"square", [](const Tensor& x) { return square(x); }, false},
      {"abs", [](const Tensor& x) { return abs(x); }, false},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.55, 0.65); }, false},
      {"add_scalar", [](const Tensor& x) { return x + 1.5; }, false},
      {"mul_scalar", [](const Tensor& x) { return x * -2.25; }, false},
      {"div_scalar", [](const Tensor& x) { return x / 3.0; }, false},
      {"pow_scalar", [](const Tensor& x) { return pow(x, 2.5); }, true},
      {"rsub_scalar", [](const Tensor& x) { return 2.0 - x; }, false},
      {"rdiv_scalar", [](const Tensor& x) { return 2.0 / x; }, false},
  };
  for (const GoldenUnary& op : ops) {
    std::string n = op.name;
    for (DType dt : {DType::F32, DType::F64}) {
      GoldenTol tol = dt == DType::F32 ? kF32Tol : op.transcendental ? kF64TranscTol : kF64ExactTol;
      Tensor x = g.get(n + "/x").to(dt).set_requires_grad(true);
      Tensor y = op.fn(x);
      EXPECT_EQ(y.dtype(), dt);
      EXPECT_TRUE(allclose(y, g.get(n + "/y"), tol.atol, tol.rtol)) << n << " " << dtype_name(dt);
      sum(mul(y, g.get(n + "/w").to(dt))).backward();
      EXPECT_TRUE(allclose(x.grad(), g.get(n + "/dx"), tol.atol, tol.rtol))
          << n << " grad " << dtype_name(dt);
    }
  }
}

TEST(ElementwiseGoldenTest, BinaryOpsAndWhereMatchPyTorch) {
  testing::GoldenFile g("elementwise.h5");
  const std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>> ops[] = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }},
      {"where", {}},
  };
  for (const auto& [name, fn] : ops) {
    std::string n = name;
    for (DType dt : {DType::F32, DType::F64}) {
      GoldenTol tol = dt == DType::F32 ? kF32Tol : n == "pow" ? kF64TranscTol : kF64ExactTol;
      Tensor a = g.get(n + "/a").to(dt).set_requires_grad(true);
      Tensor b = g.get(n + "/b").to(dt).set_requires_grad(true);
      Tensor y = fn ? fn(a, b) : where(g.get("where/cond").to(DType::Bool), a, b);
      EXPECT_TRUE(allclose(y, g.get(n + "/y"), tol.atol, tol.rtol)) << n << " " << dtype_name(dt);
      sum(mul(y, g.get(n + "/w").to(dt))).backward();
      EXPECT_TRUE(allclose(a.grad(), g.get(n + "/da"), tol.atol, tol.rtol)) << n << " da";
      EXPECT_TRUE(allclose(b.grad(), g.get(n + "/db"), tol.atol, tol.rtol)) << n << " db";
    }
  }
}

}  // namespace
}  // namespace loom

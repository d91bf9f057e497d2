// softmax / log_softmax, layer_norm, dropout, embedding, cross_entropy and the AdamW kernel:
// golden values from PyTorch (tests/golden/gen_nn.py -> nn.h5), f64 gradcheck on contiguous,
// transposed and broadcast inputs, fast kernels vs the reference kernels (ref/NnRef.h) on odd
// sizes, determinism across thread counts, dropout statistics, AdamW vs a closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/NnRef.h"
#include "core/ops/Nn.h"
#include "core/random/Generator.h"
#include "tests/support/Golden.h"
#include "tests/support/GradCheck.h"

namespace loom {
namespace {

using testing::allclose;
using testing::gradcheck;
using testing::GoldenFile;

// Golden tolerances. f32: the brief's bound (atol 1e-6, rtol 1e-5), a few f32 ulps of headroom
// over PyTorch's own f32 kernels. f64: both sides are f64 with different summation orders, so
// differences are ~1e-15 relative; 1e-12 leaves room without hiding an O(1e-8) formula slip.
struct Tol {
  double atol, rtol;
};
Tol tol_for(const std::string& p) { return p == "f32/" ? Tol{1e-6, 1e-5} : Tol{1e-12, 1e-10}; }

class NnGolden : public ::testing::TestWithParam<std::string> {
 protected:
  GoldenFile g{"nn.h5"};
  std::string p = GetParam();
  Tol tol = tol_for(GetParam());
  Tensor leaf(const std::string& name) { return g.get(p + name).set_requires_grad(true); }
  Tensor get(const std::string& name) { return g.get(p + name); }
};

TEST_P(NnGolden, SoftmaxOverMiddleDimMatchesTorch) {
  Tensor x = leaf("softmax/x");
  Tensor y = softmax(x, 1);
  EXPECT_TRUE(allclose(y, get("softmax/y"), tol.atol, tol.rtol));
  y.backward(get("softmax/dy"));
  EXPECT_TRUE(allclose(x.grad(), get("softmax/dx"), tol.atol, tol.rtol));
}

TEST_P(NnGolden, LogSoftmaxMatchesTorch) {
  Tensor x = leaf("log_softmax/x");
  Tensor y = log_softmax(x, -1);
  EXPECT_TRUE(allclose(y, get("log_softmax/y"), tol.atol, tol.rtol));
  y.backward(get("log_softmax/dy"));
  EXPECT_TRUE(allclose(x.grad(), get("log_softmax/dx"), tol.atol, tol.rtol));
}

TEST_P(NnGolden, LayerNormMatchesTorch) {
  Tensor x = leaf("layer_norm/x"), w = leaf("layer_norm/weight"), b = leaf("layer_norm/bias");
  Tensor y = layer_norm(x, w, b, 1e-5);
  EXPECT_TRUE(allclose(y, get("layer_norm/y"), tol.atol, tol.rtol));
  y.backward(get("layer_norm/dy"));
  EXPECT_TRUE(allclose(x.grad(), get("layer_norm/dx"), tol.atol, tol.rtol));
  EXPECT_TRUE(allclose(w.grad(), get("layer_norm/dweight"), tol.atol, tol.rtol));
  EXPECT_TRUE(allclose(b.grad(), get("layer_norm/dbias"), tol.atol, tol.rtol));
}

TEST_P(NnGolden, CrossEntropyWithIgnoredTargetsMatchesTorch) {
  Tensor t = g.get("f64/cross_entropy/targets");
  const std::pair<Reduction, const char*> cases[] = {
      {Reduction::Mean, "mean"}, {Reduction::Sum, "sum"}, {Reduction::None, "none"}};
  for (auto [red, name] : cases) {
    SCOPED_TRACE(name);
    Tensor logits = leaf("cross_entropy/logits");
    Tensor loss = cross_entropy(logits, t, -100, red);
    EXPECT_TRUE(allclose(loss, get(std::string("cross_entropy/loss_") + name), tol.atol, tol.rtol));
    if (red == Reduction::None) loss.backward(get("cross_entropy/dy_none"));
    else loss.backward();
    EXPECT_TRUE(allclose(logits.grad(), get(std::string("cross_entropy/dlogits_") + name),
                         tol.atol, tol.rtol));
  }
}

TEST_P(NnGolden, EmbeddingWithRepeatedIdsMatchesTorch) {
  Tensor w = leaf("embedding/weight");
  Tensor y = embedding(w, g.get("f64/embedding/ids"));
  EXPECT_TRUE(allclose(y, get("embedding/y"), tol.atol, tol.rtol));
  y.backward(get("embedding/dy"));
  EXPECT_TRUE(allclose(w.grad(), get("embedding/dweight"), tol.atol, tol.rtol));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NnGolden, ::testing::Values("f32/", "f64/"),
                         [](const auto& info) { return info.param.substr(0, 3); });

// ---- gradcheck (f64; PyTorch's default eps/atol/rtol from GradCheck.h) -----------------------

TEST(NnGradTest, SoftmaxOverNonLastDimOfTransposedInput) {
  Generator gen(1);
  auto fn = [](const std::vector<Tensor>& in) { return softmax(in[0].transpose(0, 2), 1); };
  EXPECT_TRUE(gradcheck(fn, {Tensor::randn({4, 3, 2}, gen, DType::F64).set_requires_grad(true)}));
}

TEST(NnGradTest, LogSoftmaxOnContiguousAndBroadcastInputs) {
  Generator gen(2);
  auto fn = [](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); };
  EXPECT_TRUE(gradcheck(fn, {Tensor::randn({3, 5}, gen, DType::F64).set_requires_grad(true)}));
  auto bfn = [](const std::vector<Tensor>& in) { return log_softmax(in[0].expand({3, 5}), 0); };
  EXPECT_TRUE(gradcheck(bfn, {Tensor::randn({1, 5}, gen, DType::F64).set_requires_grad(true)}));
}

TEST(NnGradTest, LayerNormWithAndWithoutAffine) {
  Generator gen(3);
  Tensor x = Tensor::randn({5, 3, 2}, gen, DType::F64).set_requires_grad(true);
  Tensor w = Tensor::randn({5}, gen, DType::F64).set_requires_grad(true);
  Tensor b = Tensor::randn({5}, gen, DType::F64).set_requires_grad(true);
  auto affine = [](const std::vector<Tensor>& in) {  // x transposed: (2,3,5), normalised over 5
    return layer_norm(in[0].transpose(0, 2), in[1], in[2], 1e-5);
  };
  EXPECT_TRUE(gradcheck(affine, {x, w, b}));
  auto plain = [](const std::vector<Tensor>& in) {
    return layer_norm(in[0].transpose(0, 2), Tensor(), Tensor(), 1e-5);
  };
  EXPECT_TRUE(gradcheck(plain, {x}));
  auto weight_only = [](const std::vector<Tensor>& in) {
    return layer_norm(in[0].expand({2, 4}), in[1], Tensor(), 1e-5);  // broadcast input
  };
  EXPECT_TRUE(gradcheck(weight_only, {Tensor::randn({4}, gen, DType::F64).set_requires_grad(true),
                                      Tensor::randn({4}, gen, DType::F64).set_requires_grad(true)}));
}

TEST(NnGradTest, CrossEntropyWithIgnoredTargets) {
  Generator gen(4);
  Tensor t = Tensor::from_vector<int64_t>({2, -100, 0, 4, -100, 4}, {6});
  Tensor logits = Tensor::randn({5, 6}, gen, DType::F64).set_requires_grad(true);
  for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    auto fn = [&](const std::vector<Tensor>& in) { return cross_entropy(in[0].t(), t, -100, red); };
    EXPECT_TRUE(gradcheck(fn, {logits})) << "reduction " << int(red);
  }
  Tensor all_ignored = Tensor::full({6}, -1.0, DType::I64);
  Tensor l = cross_entropy(logits.t(), all_ignored, -1, Reduction::Mean);
  EXPECT_EQ(l.item(), 0.0);  // mean over no targets is defined as 0 (Nn.h)
}

TEST(NnGradTest, EmbeddingWithRepeatedIds) {
  Generator gen(5);
  Tensor ids = Tensor::from_vector<int64_t>({1, 3, 1, 1, 0, 3}, {2, 3});
  auto fn = [&](const std::vector<Tensor>& in) { return embedding(in[0], ids); };
  EXPECT_TRUE(gradcheck(fn, {Tensor::randn({4, 3}, gen, DType::F64).set_requires_grad(true)}));
}

TEST(NnGradTest, DropoutUsesTheSameMaskForwardAndBackward) {
  Generator gen(6);
  auto fn = [](const std::vector<Tensor>& in) {
    Generator g(77);  // fresh generator per call: every evaluation draws the same mask
    return dropout(in[0].t(), 0.4, g, true);
  };
  EXPECT_TRUE(gradcheck(fn, {Tensor::randn({6, 5}, gen, DType::F64).set_requires_grad(true)}));
}

// ---- dropout semantics and statistics ------------------------------------------------------

TEST(DropoutTest, KeepRateScalingAndDeterminismAcrossThreads) {
  const int64_t n = 200000;
  const double p = 0.1;
  Tensor x = Tensor::full({n}, 3.0);
  Generator g1(123);
  cpu::set_num_threads(1);
  std::vector<float> y1 = dropout(x, p, g1).to_vector<float>();
  cpu::set_num_threads(2);
  Generator g2(123);
  std::vector<float> y2 = dropout(x, p, g2).to_vector<float>();
  EXPECT_EQ(y1, y2);  // bitwise: the mask depends on Philox counters only
  EXPECT_EQ(g1.offset(), uint64_t(n));  // counters reserved: one per element
  int64_t kept = 0;
  for (float v : y1) {
    if (v == 0.0f) continue;
    ++kept;
    EXPECT_FLOAT_EQ(v, float(3.0 / (1.0 - p)));
  }
  // Binomial keep count: std = sqrt(n p (1-p)) ~ 134; 6 sigma bound, so a correct mask fails
  // with probability ~1e-9.
  EXPECT_NEAR(double(kept), n * (1 - p), 6 * std::sqrt(n * p * (1 - p)));
  // A second call draws fresh counters, so a different mask.
  EXPECT_NE(dropout(x, p, g1).to_vector<float>(), y1);
}

TEST(DropoutTest, IdentityInEvalOrPZeroAndZerosAtPOne) {
  Generator gen(9);
  Tensor x = Tensor::randn({4, 7}, gen);
  EXPECT_TRUE(dropout(x, 0.5, gen, false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0, gen, true).is_same(x));
  for (float v : dropout(x, 1.0, gen, true).to_vector<float>()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(dropout(x, 1.5, gen, true), ValueError);
}

// ---- errors ------------------------------------------------------------------------------------

TEST(NnErrorTest, CrossEntropyTargetOutOfRangeNamesIt) {
  Tensor logits = Tensor::zeros({2, 5});
  Tensor t = Tensor::from_vector<int64_t>({1, 7}, {2});
  try {
    cross_entropy(logits, t);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("got 7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[0, 5)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cross_entropy(logits, Tensor::zeros({2})), ValueError);  // f32 targets
  EXPECT_THROW(embedding(logits, Tensor::from_vector<int64_t>({2, 5}, {2})), ValueError);
  EXPECT_THROW(layer_norm(logits, Tensor::ones({4}), Tensor()), ValueError);
}

// ---- fast kernels vs reference kernels on odd sizes --------------------------------------

// Fast f32 vs the reference (which computes in double and rounds once). The fast kernels
// accumulate every sum in double too, so what remains is f32 rounding of per-element terms: e.g.
// layer-norm dweight sums 67 products dy*xhat whose f32 xhat carries ~1e-7 relative error, giving
// ~sqrt(67) * |term ~2| * 1e-7 = 1.6e-6 absolute worst-ish. Hence atol 2e-6, rtol 1e-5 (the
// brief's golden rtol). f64: summation-order differences only (~1e-15), bounded at 1e-12.
Tol kernel_tol(DType dt) { return dt == DType::F32 ? Tol{2e-6, 1e-5} : Tol{1e-12, 1e-12}; }

using KernelCase = std::tuple<DType, int64_t, int64_t>;  // dtype, rows, cols
class NnKernelVsRef : public ::testing::TestWithParam<KernelCase> {
 protected:
  DType dt = std::get<0>(GetParam());
  int64_t rows = std::get<1>(GetParam()), cols = std::get<2>(GetParam());
  Tol tol = kernel_tol(dt);
  Generator gen{uint64_t(rows * 100003 + cols)};
  Backend& be = backend_for(DeviceType::CPU);
  Tensor randn(const Shape& s, double scale = 1.0) {
    return Tensor::randn(s, gen, dt, Device::cpu(), 0.0, scale);
  }
  Tensor empty(const Shape& s) { return Tensor::empty(s, dt); }
};

TEST_P(NnKernelVsRef, Softmax) {
  Tensor x = randn({rows, cols}, 3.0), dy = randn({rows, cols});
  for (bool log : {false, true}) {
    Tensor y = empty({rows, cols}), yr = empty({rows, cols});
    be.softmax_forward(y, x, log);
    cpu::ref::softmax_forward(yr, x, log);
    EXPECT_TRUE(allclose(y, yr, tol.atol, tol.rtol)) << "log " << log;
    Tensor dx = empty({rows, cols}), dxr = empty({rows, cols});
    be.softmax_backward(dx, dy, yr, log);
    cpu::ref::softmax_backward(dxr, dy, yr, log);
    EXPECT_TRUE(allclose(dx, dxr, tol.atol, tol.rtol)) << "log " << log;
  }
}

TEST_P(NnKernelVsRef, LayerNorm) {
  Tensor x = randn({rows, cols}, 2.0), w = randn({cols}), b = randn({cols}), dy = randn({rows, cols});
  for (bool affine : {true, false}) {
    Tensor wt = affine ? w : Tensor(), bt = affine ? b : Tensor();
    Tensor y = empty({rows, cols}), m = empty({rows}), r = empty({rows});
    Tensor yr = empty({rows, cols}), mr = empty({rows}), rr = empty({rows});
    be.layernorm_forward(y, m, r, x, wt, bt, 1e-5);
    cpu::ref::layernorm_forward(yr, mr, rr, x, wt, bt, 1e-5);
    EXPECT_TRUE(allclose(y, yr, tol.atol, tol.rtol)) << "affine " << affine;
    EXPECT_TRUE(allclose(m, mr, tol.atol, tol.rtol));
    EXPECT_TRUE(allclose(r, rr, tol.atol, tol.rtol));
    Tensor dx = empty({rows, cols}), dw = empty({cols}), db = empty({cols});
    Tensor dxr = empty({rows, cols}), dwr = empty({cols}), dbr = empty({cols});
    be.layernorm_backward(dx, dw, db, dy, x, wt, mr, rr);
    cpu::ref::layernorm_backward(dxr, dwr, dbr, dy, x, wt, mr, rr);
    EXPECT_TRUE(allclose(dx, dxr, tol.atol, tol.rtol)) << "affine " << affine;
    EXPECT_TRUE(allclose(dw, dwr, tol.atol, tol.rtol));
    EXPECT_TRUE(allclose(db, dbr, tol.atol, tol.rtol));
  }
}

TEST_P(NnKernelVsRef, CrossEntropy) {
  Tensor x = randn({rows, cols}, 3.0), dloss = randn({rows});
  std::vector<int64_t> tv(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) tv[size_t(i)] = i == 1 ? -1 : (i * 7919) % cols;
  Tensor t = Tensor::from_vector(tv, {rows});
  Tensor loss = empty({rows}), lse = empty({rows}), lossr = empty({rows}), lser = empty({rows});
  be.cross_entropy_forward(loss, lse, x, t, -1);
  cpu::ref::cross_entropy_forward(lossr, lser, x, t, -1);
  EXPECT_TRUE(allclose(loss, lossr, tol.atol, tol.rtol));
  EXPECT_TRUE(allclose(lse, lser, tol.atol, tol.rtol));
  Tensor d = empty({rows, cols}), dr = empty({rows, cols});
  be.cross_entropy_backward(d, dloss, x, t, lser, -1);
  cpu::ref::cross_entropy_backward(dr, dloss, x, t, lser, -1);
  EXPECT_TRUE(allclose(d, dr, tol.atol, tol.rtol));
}

INSTANTIATE_TEST_SUITE_P(OddSizes, NnKernelVsRef,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F64),
                                            ::testing::Values(1, 3, 67),
                                            ::testing::Values(1, 7, 50257)),
                         [](const auto& info) {
                           return std::string(dtype_name(std::get<0>(info.param))) + "_r" +
                                  std::to_string(std::get<1>(info.param)) + "_c" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(NnKernelTest, SoftmaxHandlesMinusInfAndLargeLogits) {
  Tensor x = Tensor::from_vector<float>({-INFINITY, 0.0f, 1000.0f, -1000.0f, 3.0f, 999.0f, 2.0f,
                                         -INFINITY, 5.0f},
                                        {1, 9});
  Tensor y = Tensor::empty({1, 9}), yr = Tensor::empty({1, 9});
  backend_for(DeviceType::CPU).softmax_forward(y, x, false);
  cpu::ref::softmax_forward(yr, x, false);
  // Values are exactly 0 (exp(-inf), underflow) or near 0.731/0.269; 1e-7 is ~2 f32 ulps of 0.73.
  EXPECT_TRUE(allclose(y, yr, 1e-7, 0.0));
  EXPECT_EQ(y.to_vector<float>()[0], 0.0f);
}

TEST(NnKernelTest, LayerNormWeightGradIsIndependentOfThreadCount) {
  Generator gen(11);
  const int64_t N = 1000, C = 70;  // many 32-row blocks, C not a multiple of 8
  Tensor x = Tensor::randn({N, C}, gen), dy = Tensor::randn({N, C}, gen), w = Tensor::randn({C}, gen);
  Tensor m = Tensor::empty({N}), r = Tensor::empty({N}), y = Tensor::empty({N, C});
  Backend& be = backend_for(DeviceType::CPU);
  be.layernorm_forward(y, m, r, x, w, Tensor(), 1e-5);
  std::vector<float> dw[2], dx[2];
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    Tensor d = Tensor::empty({N, C}), g = Tensor::empty({C}), gb = Tensor::empty({C});
    be.layernorm_backward(d, g, gb, dy, x, w, m, r);
    dw[threads - 1] = g.to_vector<float>();
    dx[threads - 1] = d.to_vector<float>();
  }
  EXPECT_EQ(dw[0], dw[1]);
  EXPECT_EQ(dx[0], dx[1]);
}

// ---- AdamW kernel vs a closed-form double computation ------------------------------------

void adamw_closed_form(std::vector<double>& p, const std::vector<std::vector<double>>& grads,
                       double lr, double b1, double b2, double eps, double wd) {
  std::vector<double> m(p.size(), 0.0), v(p.size(), 0.0);
  for (size_t step = 1; step <= grads.size(); ++step) {
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grads[step - 1][i];
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      double mhat = m[i] / (1 - std::pow(b1, double(step)));
      double vhat = v[i] / (1 - std::pow(b2, double(step)));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
}

void check_adamw(DType dt, double atol) {
  Generator gen(21);
  const int64_t n = 8 * 1024 * 2 + 13;  // several 8192-element jobs, a ragged tail
  const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  Tensor p = Tensor::randn({n}, gen, dt), m = Tensor::zeros({n}, dt), v = Tensor::zeros({n}, dt);
  std::vector<double> expect = p.to_vector<double>();
  std::vector<std::vector<double>> grads;
  for (int step = 1; step <= 3; ++step) {
    Tensor g = Tensor::randn({n}, gen, dt, Device::cpu(), 0.0, step == 2 ? 1e-4 : 1.0);
    grads.push_back(g.to_vector<double>());
    backend_for(DeviceType::CPU).adamw_step(p, g, m, v, lr, b1, b2, eps, wd,
                                            1 - std::pow(b1, step), 1 - std::pow(b2, step));
  }
  adamw_closed_form(expect, grads, lr, b1, b2, eps, wd);
  EXPECT_TRUE(allclose(p, Tensor::from_vector(expect, {n}), atol, 0.0)) << dtype_name(dt);
}

TEST(AdamWKernelTest, ThreeStepsMatchClosedFormF64) {
  check_adamw(DType::F64, 1e-12);  // TESTPLAN U5: fp64 abs err <= 1e-12 after 3 steps
}

TEST(AdamWKernelTest, ThreeStepsMatchClosedFormF32) {
  // f32: |p| <= ~5, each step rounds p (ulp(4) = 4.8e-7) and the update (lr * O(1) * few ulps);
  // 3 steps stay below 2e-6.
  check_adamw(DType::F32, 2e-6);
}

}  // namespace
}  // namespace loom

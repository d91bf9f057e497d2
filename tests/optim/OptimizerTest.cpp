// AdamW and SGD against their closed forms (scalar loops in double, PyTorch's formulas), the
// default weight-decay split, optimizer state access and zero_grad (TESTPLAN optimizer units).
#include <cmath>

#include <gtest/gtest.h>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "optim/AdamW.h"
#include "optim/SGD.h"

namespace loom::optim {
namespace {

constexpr int kSteps = 3;

std::vector<double> values(size_t n, double scale, double shift) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * std::sin(1.3 * double(i) + shift);
  return v;
}
// Gradient of parameter `which` at step s: fixed, varied in sign and size.
std::vector<double> grad_at(int which, int s, size_t n) {
  return values(n, 0.5 + 0.25 * s, 0.7 * which + 1.9 * s);
}

struct Case {
  std::vector<NamedParam> params;
  std::vector<std::vector<double>> init;
};
Case make_case(DType dtype) {
  Case c;
  c.init = {values(12, 1.0, 0.1), values(4, 0.3, 2.0)};
  c.params = {{"blocks.0.mlp.fc.weight", Tensor::from_vector(c.init[0], {3, 4}).to(dtype)},
              {"blocks.0.mlp.fc.bias", Tensor::from_vector(c.init[1], {4}).to(dtype)}};
  for (auto& [n, p] : c.params) p.set_requires_grad(true);
  return c;
}
void set_grads(Case& c, int s, DType dtype) {
  for (int i = 0; i < 2; ++i) {
    Tensor& p = c.params[size_t(i)].second;
    p.set_grad(Tensor::from_vector(grad_at(i, s, size_t(p.numel())), p.shape()).to(dtype));
  }
}

struct AdamRef {
  double lr, b1, b2, eps, wd;
  // Runs kSteps updates on x with the grads of parameter `which`; returns x, m, v.
  std::vector<std::vector<double>> run(std::vector<double> x, int which, double wd_here) const {
    std::vector<double> m(x.size(), 0.0), v(x.size(), 0.0);
    for (int s = 0; s < kSteps; ++s) {
      std::vector<double> g = grad_at(which, s, x.size());
      double bc1 = 1 - std::pow(b1, s + 1), bc2 = 1 - std::pow(b2, s + 1);
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] *= 1 - lr * wd_here;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        x[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
      }
    }
    return {x, m, v};
  }
};

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol) << what << "[" << i << "]";
}

void check_adamw(DType dtype, double tol) {
  Case c = make_case(dtype);
  AdamWOptions o;
  o.lr = 0.05;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  AdamW opt(c.params, o);
  for (int s = 0; s < kSteps; ++s) {
    set_grads(c, s, dtype);
    opt.step();
  }
  AdamRef ref{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay};
  for (int i = 0; i < 2; ++i) {
    const std::string& name = c.params[size_t(i)].first;
    auto want = ref.run(c.init[size_t(i)], i, i == 0 ? o.weight_decay : 0.0);  // bias: no decay
    expect_near(c.params[size_t(i)].second.to_vector<double>(), want[0], tol, name);
    ParamState& st = opt.state(name);
    EXPECT_EQ(st.step, kSteps);
    expect_near(st.buffers.at("exp_avg").to_vector<double>(), want[1], tol, name + " m");
    expect_near(st.buffers.at("exp_avg_sq").to_vector<double>(), want[2], tol, name + " v");
  }
  EXPECT_EQ(opt.step_count(), kSteps);
}

TEST(AdamWTest, MatchesClosedFormF64) {
  // f64 reference formula vs the same formula in f64 tensor ops: only rounding of a few ops on
  // O(1) values (~1e-16 each) differs, far below the 1e-12 budget.
  check_adamw(DType::F64, 1e-12);
}

TEST(AdamWTest, FusedF32KernelMatchesClosedForm) {
  // The f32 kernel vs the f64 closed form: f32 rounding (2^-24 ~ 6e-8 relative) of O(1) values
  // over ~10 ops and 3 steps; the update divides by sqrt(v), which can magnify a few ulps, so 2e-6.
  check_adamw(DType::F32, 2e-6);
}

TEST(AdamWTest, ParametersWithoutGradAreSkipped) {
  Case c = make_case(DType::F64);
  AdamW opt(c.params, AdamWOptions{});
  c.params[0].second.set_grad(Tensor::ones({3, 4}, DType::F64));
  opt.step();
  EXPECT_EQ(opt.state(c.params[1].first).step, 0);
  EXPECT_EQ(c.params[1].second.to_vector<double>(), c.init[1]);
  EXPECT_NE(c.params[0].second.to_vector<double>(), c.init[0]);
  opt.zero_grad();
  EXPECT_FALSE(c.params[0].second.grad().defined());
  EXPECT_THROW(opt.state("no.such.param"), ValueError);
}

TEST(AdamWTest, DefaultDecayFilterSkipsBiasesNormsAndEmbeddings) {
  Tensor mat = Tensor::zeros({4, 4}), vec = Tensor::zeros({4});
  EXPECT_TRUE(default_decay_filter("blocks.0.attn.qkv.weight", mat));
  EXPECT_TRUE(default_decay_filter("lm_head.weight", mat));
  EXPECT_FALSE(default_decay_filter("blocks.0.attn.qkv.bias", vec));
  EXPECT_FALSE(default_decay_filter("blocks.0.ln_1.weight", vec));
  EXPECT_FALSE(default_decay_filter("wte.weight", mat));
  EXPECT_FALSE(default_decay_filter("wpe.weight", mat));
  auto groups = make_decay_groups({{"a.weight", mat.clone()}, {"a.bias", vec.clone()}}, 0.1, 0.5);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].weight_decay, 0.5);
  EXPECT_EQ(groups[0].params[0].first, "a.weight");
  EXPECT_EQ(groups[1].weight_decay, 0.0);
  EXPECT_EQ(groups[1].params[0].first, "a.bias");
}

TEST(AdamWTest, RejectsDuplicateNamesAndBadOptions) {
  Tensor a = Tensor::zeros({2}).set_requires_grad(true);
  EXPECT_THROW(AdamW({{"x", a}, {"x", a}}, AdamWOptions{}), ValueError);
  AdamWOptions bad;
  bad.beta2 = 1.0;
  EXPECT_THROW(AdamW({{"x", a}}, bad), ValueError);
}

// PyTorch SGD: d = g + wd p; buf = d (first) else mu buf + (1-damp) d; d = nesterov ? d + mu buf
// : buf; p -= lr d.
std::vector<double> sgd_ref(std::vector<double> x, int which, const SGDOptions& o, double wd) {
  std::vector<double> buf(x.size(), 0.0);
  for (int s = 0; s < kSteps; ++s) {
    std::vector<double> g = grad_at(which, s, x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      double d = g[i] + wd * x[i];
      if (o.momentum != 0) {
        buf[i] = s == 0 ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      x[i] -= o.lr * d;
    }
  }
  return x;
}

TEST(SGDTest, MatchesClosedFormF64) {
  SGDOptions plain{.lr = 0.1};
  SGDOptions momentum{.lr = 0.1, .momentum = 0.9, .dampening = 0.25, .weight_decay = 0.01};
  SGDOptions nesterov{.lr = 0.05, .momentum = 0.8, .nesterov = true, .weight_decay = 0.02};
  for (const SGDOptions& o : {plain, momentum, nesterov}) {
    Case c = make_case(DType::F64);
    SGD opt(c.params, o);
    for (int s = 0; s < kSteps; ++s) {
      set_grads(c, s, DType::F64);
      opt.step();
    }
    for (int i = 0; i < 2; ++i) {
      auto want = sgd_ref(c.init[size_t(i)], i, o, i == 0 ? o.weight_decay : 0.0);
      // Same formula in f64 on both sides: rounding only (see AdamWTest.MatchesClosedFormF64).
      expect_near(c.params[size_t(i)].second.to_vector<double>(), want, 1e-12,
                  c.params[size_t(i)].first);
    }
  }
  EXPECT_THROW(SGD(std::vector<NamedParam>{}, SGDOptions{.lr = 0.1, .nesterov = true}),
               ValueError);
}

}  // namespace
}  // namespace loom::optim

// Training-loop acceptance on the tiny GPT of tests/golden/gen_gpt.py: 10 steps of
// LrSchedule + clip_grad_norm + AdamW reproduce PyTorch's losses, grad norms and final params;
// gradient accumulation over micro-batches equals one big batch.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>

#include "core/autograd/GradMode.h"
#include "core/backend/Backend.h"
#include "core/ops/Elementwise.h"
#include "core/random/Generator.h"
#include "models/GPT.h"
#include "optim/AdamW.h"
#include "optim/ClipGradNorm.h"
#include "optim/LrSchedule.h"
#include "tests/support/Golden.h"

namespace loom::optim {
namespace {

using models::GPT;
using models::GPTConfig;

GPTConfig tiny_config() {  // must match gen_gpt.py
  GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  c.vocab_size = 64;
  c.block_size = 16;
  return c;
}

double rel_f(const Tensor& a, const Tensor& b) {  // ||a-b||_F / ||b||_F
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / den);
}

bool is_qkv_bias(const std::string& name) {
  const std::string suffix = "attn.qkv.bias";
  return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
}

// NB: the key part of each qkv bias (elements [C, 2C)) has an exactly zero true gradient: adding
// q.b_k to every score of a query row does not change its softmax. In f64 its gradient is ~1e-20;
// in f32 it is rounding noise (~1e-11), which AdamW turns into updates of up to lr * |g| / eps per
// step, different in every implementation (PyTorch's own f32 run ends ~7e-4 relF away from its
// f64 run there). So in f32 we check that slice against the f64 truth with that derived bound,
// and the q and v slices at the normal tolerance.
struct KeyBiasDrift {
  double max_grad = 0.0;  // max |grad| of any key-bias element over all steps (after clipping)
  double bound = 0.0;     // sum over steps of lr * (max |grad| so far) / eps
};

void check_params(GPT& model, const testing::GoldenFile& g, const testing::GoldenFile& g64,
                  DType dtype, double tol, const KeyBiasDrift& drift) {
  const int64_t C = model.config().n_embd;
  for (auto& [name, p] : model.named_parameters()) {
    Tensor want = g.get("after/" + name);
    if (dtype != DType::F32 || !is_qkv_bias(name)) {
      EXPECT_LE(rel_f(p, want), tol) << name;
      continue;
    }
    EXPECT_LE(rel_f(p.narrow(0, 0, C), want.narrow(0, 0, C)), tol) << name << " (q)";
    EXPECT_LE(rel_f(p.narrow(0, 2 * C, C), want.narrow(0, 2 * C, C)), tol) << name << " (v)";
    std::vector<double> k = p.narrow(0, C, C).to_vector<double>();
    std::vector<double> k64 = g64.get("after/" + name).narrow(0, C, C).to_vector<double>();
    for (size_t i = 0; i < k.size(); ++i)
      EXPECT_LE(std::abs(k[i] - k64[i]), drift.bound + 1e-9) << name << " (k) [" << i << "]";
  }
  EXPECT_LT(drift.max_grad, 1e-8) << "key-bias gradient should be rounding noise below eps";
}

void train_against_golden(const char* file, DType dtype, double tol,
                          Device device = Device::cpu()) {
  testing::GoldenFile init("gpt.h5");
  testing::GoldenFile g(file);
  testing::GoldenFile g64("gpt_f64.h5");
  GPT model(tiny_config(), {}, dtype, device);
  model.init_weights(0);
  {
    NoGradGuard no_grad;
    for (auto& [name, p] : model.named_parameters()) p.copy_(init.get("params/" + name).to(dtype));
  }
  Tensor ids = init.get("ids").to(device), targets = init.get("targets").to(device);
  // The tied wte (= LM head) is an embedding: no decay, like biases and LayerNorm (gen_gpt.py).
  const AdamWOptions opts{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                          .weight_decay = 0.1};
  AdamW opt(model.named_parameters(), opts);
  LrSchedule sched{.kind = DecayKind::Cosine, .peak_lr = 1e-2, .min_lr = 1e-3,
                   .warmup_steps = 3, .total_steps = 10};
  std::vector<double> want_loss = g.get("train/loss").to_vector<double>();
  std::vector<double> want_norm = g.get("train/grad_norm").to_vector<double>();
  KeyBiasDrift drift;
  const int64_t C = model.config().n_embd;
  for (int64_t step = 0; step < 10; ++step) {
    opt.set_lr(sched.lr_at(step));
    opt.zero_grad();
    Tensor loss = model.loss(ids, targets);
    loss.backward();
    double norm = clip_grad_norm(model.parameters(), 1.0);
    double step_max = 0.0;
    for (auto& [name, p] : model.named_parameters())
      if (is_qkv_bias(name))
        for (double x : p.grad().narrow(0, C, C).to_vector<double>())
          step_max = std::max(step_max, std::abs(x));
    // |m_hat| <= max past |g|, so one update moves an element by at most lr * that / eps.
    drift.max_grad = std::max(drift.max_grad, step_max);
    drift.bound += sched.lr_at(step) * drift.max_grad / opts.eps;
    opt.step();
    double wl = want_loss[size_t(step)], wn = want_norm[size_t(step)];
    EXPECT_LE(std::abs(loss.item() - wl) / wl, tol) << "loss at step " << step;
    EXPECT_LE(std::abs(norm - wn) / wn, tol) << "grad norm at step " << step;
  }
  check_params(model, g, g64, dtype, tol, drift);
}

TEST(GPTTrainingTest, TenAdamWStepsMatchPyTorchF32) {
  // Issue acceptance: 1e-5 relative. f32 summation-order rounding (~1e-7..1e-6 per tensor) is
  // what separates the two implementations; AdamW's division by sqrt(v) can amplify it.
  train_against_golden("gpt.h5", DType::F32, 1e-5);
}

TEST(GPTTrainingTest, TenAdamWStepsMatchPyTorchF64) {
  // f64 end to end: rounding only (~1e-16 per op), amplified through 10 steps; 1e-10 still
  // fails on any formula difference (lr, bias correction, decay, clip coefficient).
  train_against_golden("gpt_f64.h5", DType::F64, 1e-10);
}

TEST(GPTTrainingTest, TenAdamWStepsMatchPyTorchOnCuda) {
  if (!backend_available(DeviceType::CUDA)) GTEST_SKIP() << "no CUDA backend or GPU";
  // The CUDA adamw_step kernel and ops under the same budgets as the CPU runs above.
  train_against_golden("gpt.h5", DType::F32, 1e-5, Device::cuda(0));
  train_against_golden("gpt_f64.h5", DType::F64, 1e-10, Device::cuda(0));
}

TEST(GPTTrainingTest, GradientAccumulationEqualsOneBigBatch) {
  testing::GoldenFile init("gpt.h5");
  Tensor ids = init.get("ids"), targets = init.get("targets");  // (2,16), one -100 per row
  auto build = [] {
    auto m = std::make_unique<GPT>(tiny_config(), models::Layout{}, DType::F64);
    m->init_weights(5);
    return m;
  };
  auto big = build(), acc = build();
  big->loss(ids, targets).backward();
  // Each row has 15 counted targets, so the full-batch mean is the mean of the two row means.
  for (int64_t b = 0; b < 2; ++b) {
    Tensor loss = acc->loss(ids.narrow(0, b, 1).contiguous(), targets.narrow(0, b, 1).contiguous());
    (loss * 0.5).backward();
  }
  auto pb = big->named_parameters(), pa = acc->named_parameters();
  for (size_t i = 0; i < pb.size(); ++i) {
    // f64, same math in a different grouping: rounding only (~1e-16), so 1e-12 relative.
    EXPECT_LE(rel_f(pa[i].second.grad(), pb[i].second.grad()), 1e-12) << pb[i].first;
  }
}

}  // namespace
}  // namespace loom::optim

// AdamW step: per-parameter state (exp_avg, exp_avg_sq, step), bias corrections, dispatch to the
// fused backend kernel for contiguous f32 and to the tensor-op reference otherwise.
#include "optim/AdamW.h"

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/backend/Backend.h"
#include "core/ops/Elementwise.h"
#include "core/util/Check.h"

namespace loom::optim {

namespace {
void check_options(const AdamWOptions& o) {
  LOOM_CHECK(o.lr >= 0.0, "AdamW: expected lr >= 0, got ", o.lr);
  LOOM_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0 && o.beta2 >= 0.0 && o.beta2 < 1.0,
             "AdamW: expected betas in [0, 1), got (", o.beta1, ", ", o.beta2, ")");
  LOOM_CHECK(o.eps >= 0.0, "AdamW: expected eps >= 0, got ", o.eps);
  LOOM_CHECK(o.weight_decay >= 0.0, "AdamW: expected weight_decay >= 0, got ", o.weight_decay);
}
}  // namespace

AdamW::AdamW(const std::vector<NamedParam>& params, const AdamWOptions& options)
    : AdamW(make_decay_groups(params, options.lr, options.weight_decay, options.decay_filter),
            options) {}

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options)
    : Optimizer(std::move(groups)), options_(options) {
  check_options(options_);
}

void AdamW::step() {
  NoGradGuard no_grad;
  for (const ParamGroup& g : groups_)
    for (const auto& [name, p] : g.params)
      if (p.grad().defined()) update(name, p, g);
  ++step_count_;
}

void AdamW::update(const std::string& name, const Tensor& p, const ParamGroup& group) {
  Tensor grad = p.grad();
  LOOM_CHECK(grad.dtype() == p.dtype() && grad.device() == p.device(),
             "AdamW: expected the gradient of '", name, "' in the parameter's dtype and device");
  ParamState& st = state_[name];
  Tensor& m = st.buffers["exp_avg"];
  Tensor& v = st.buffers["exp_avg_sq"];
  if (!m.defined()) m = Tensor::zeros(p.shape(), p.dtype(), p.device());
  if (!v.defined()) v = Tensor::zeros(p.shape(), p.dtype(), p.device());
  st.step += 1;
  const double bc1 = 1.0 - std::pow(options_.beta1, double(st.step));
  const double bc2 = 1.0 - std::pow(options_.beta2, double(st.step));
  if (p.dtype() == DType::F32 && p.is_contiguous()) {
    backend_for(p.device())
        .adamw_step(p, grad.contiguous(), m, v, group.lr, options_.beta1, options_.beta2,
                    options_.eps, group.weight_decay, bc1, bc2);
    p.bump_version();
    m.bump_version();
    v.bump_version();
  } else {
    adamw_reference_step(p, grad, m, v, group.lr, options_.beta1, options_.beta2, options_.eps,
                         group.weight_decay, bc1, bc2);
  }
}

void adamw_reference_step(const Tensor& param, const Tensor& grad, const Tensor& m,
                          const Tensor& v, double lr, double beta1, double beta2, double eps,
                          double weight_decay, double bias_correction1, double bias_correction2) {
  NoGradGuard no_grad;
  Tensor p = param, mm = m, vv = v;  // handles: the in-place ops write the caller's tensors
  if (weight_decay != 0.0) p.mul_(1.0 - lr * weight_decay);
  mm.mul_(beta1).add_(grad, 1.0 - beta1);
  vv.mul_(beta2).add_(grad * grad, 1.0 - beta2);
  Tensor denom = sqrt(vv / bias_correction2) + eps;
  p.add_(mm / denom, -lr / bias_correction1);
}

}  // namespace loom::optim

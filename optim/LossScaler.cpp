// Dynamic loss scaling. The overflow probe of one gradient is sum(g * 0): 0 when every element is
// finite, NaN as soon as one is inf or NaN (inf * 0 = NaN), and it cannot overflow the way sum(g)
// or sum(|g|) can on large finite values. Probes are added on the gradients' device and read back
// once per step, after the cross-rank max.
#include "optim/LossScaler.h"

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"

namespace loom::optim {

LossScaler::LossScaler(LossScalerOptions options, FoundInfReducer reducer)
    : options_(options), reducer_(std::move(reducer)) {
  const LossScalerOptions& o = options_;
  LOOM_CHECK(o.init_scale > 0 && std::isfinite(o.init_scale),
             "LossScaler: expected a positive finite init_scale, got ", o.init_scale);
  LOOM_CHECK(o.growth_factor >= 1 && std::isfinite(o.growth_factor),
             "LossScaler: expected growth_factor >= 1, got ", o.growth_factor);
  LOOM_CHECK(o.backoff_factor > 0 && o.backoff_factor < 1,
             "LossScaler: expected backoff_factor in (0, 1), got ", o.backoff_factor);
  LOOM_CHECK(o.growth_interval >= 1, "LossScaler: expected growth_interval >= 1, got ",
             o.growth_interval);
  LOOM_CHECK(o.min_scale > 0 && o.min_scale <= o.init_scale,
             "LossScaler: expected 0 < min_scale <= init_scale (", o.init_scale, "), got ",
             o.min_scale);
  state_.scale = o.enabled ? o.init_scale : 1.0;
}

Tensor LossScaler::scale_loss(const Tensor& loss) const {
  if (!options_.enabled) return loss;
  return mul(loss, state_.scale);
}

bool LossScaler::unscale_(const std::vector<Tensor>& grads) {
  LOOM_CHECK(!unscaled_, "LossScaler::unscale_: expected one call per step, got a second one "
             "before update(); hint: step() unscales on its own");
  unscaled_ = true;
  found_inf_ = false;
  if (!options_.enabled) return false;
  NoGradGuard no_grad;
  const double inv = 1.0 / state_.scale;
  Tensor total;  // f32 scalar on the gradients' device: 0 or NaN
  for (const Tensor& g : grads) {
    if (!g.defined()) continue;
    LOOM_CHECK(is_floating(g.dtype()), "LossScaler::unscale_: expected floating gradients, got ",
               dtype_name(g.dtype()));
    LOOM_CHECK(!total.defined() || g.device() == total.device(),
               "LossScaler::unscale_: expected every gradient on ", total.device().str(),
               ", got one on ", g.device().str());
    Tensor(g).mul_(inv);  // shallow handle copy: scales the gradient's storage
    Tensor probe = sum(mul(g, 0.0)).to(DType::F32);
    total = total.defined() ? add(total, probe) : probe;
  }
  if (!total.defined()) {
    if (!reducer_) return false;
    total = Tensor::zeros(Shape{}, DType::F32);  // no gradients here; other ranks may have some
  }
  Tensor flag = ne(total, total).to(DType::F32).reshape({1}).contiguous();
  if (reducer_) reducer_(flag);
  found_inf_ = flag.item() != 0.0;
  return found_inf_;
}

bool LossScaler::unscale_(Optimizer& opt) {
  std::vector<Tensor> grads;
  for (const ParamGroup& g : opt.param_groups())
    for (const auto& [name, p] : g.params)
      if (p.grad().defined()) grads.push_back(p.grad());
  return unscale_(grads);
}

bool LossScaler::step(Optimizer& opt) {
  if (!unscaled_) unscale_(opt);
  bool ok = !found_inf_;
  if (ok) opt.step();
  update();
  return ok;
}

void LossScaler::update() {
  LOOM_CHECK(unscaled_, "LossScaler::update: expected unscale_() earlier in this step, got none; "
             "hint: call step() or unscale_() first");
  unscaled_ = false;
  if (!options_.enabled) return;
  if (found_inf_) {
    ++skipped_;
    if (!options_.dynamic) return;
    state_.scale = std::max(state_.scale * options_.backoff_factor, options_.min_scale);
    state_.growth_tracker = 0;
    return;
  }
  if (!options_.dynamic) return;
  if (++state_.growth_tracker >= options_.growth_interval) {
    double grown = state_.scale * options_.growth_factor;
    if (std::isfinite(grown)) state_.scale = grown;
    state_.growth_tracker = 0;
  }
}

void LossScaler::set_state(const LossScalerState& s) {
  LOOM_CHECK(s.scale > 0 && std::isfinite(s.scale),
             "LossScaler::set_state: expected a positive finite scale, got ", s.scale);
  LOOM_CHECK(s.growth_tracker >= 0, "LossScaler::set_state: expected growth_tracker >= 0, got ",
             s.growth_tracker);
  state_ = s;
  unscaled_ = false;
  found_inf_ = false;
}

}  // namespace loom::optim

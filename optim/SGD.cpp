// SGD step written with tensor ops (any floating dtype, any device); state "momentum_buffer".
#include "optim/SGD.h"

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/util/Check.h"

namespace loom::optim {

SGD::SGD(const std::vector<NamedParam>& params, const SGDOptions& options)
    : SGD(make_decay_groups(params, options.lr, options.weight_decay, options.decay_filter),
          options) {}

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& options)
    : Optimizer(std::move(groups)), options_(options) {
  LOOM_CHECK(options_.lr >= 0.0, "SGD: expected lr >= 0, got ", options_.lr);
  LOOM_CHECK(options_.momentum >= 0.0, "SGD: expected momentum >= 0, got ", options_.momentum);
  LOOM_CHECK(!options_.nesterov || (options_.momentum > 0.0 && options_.dampening == 0.0),
             "SGD: expected momentum > 0 and dampening 0 with nesterov, got momentum ",
             options_.momentum, " and dampening ", options_.dampening);
}

void SGD::step() {
  NoGradGuard no_grad;
  for (const ParamGroup& g : groups_)
    for (const auto& [name, p] : g.params)
      if (p.grad().defined()) update(name, p, g);
  ++step_count_;
}

void SGD::update(const std::string& name, const Tensor& param, const ParamGroup& group) {
  Tensor p = param;
  Tensor d = p.grad();
  LOOM_CHECK(d.dtype() == p.dtype() && d.device() == p.device(),
             "SGD: expected the gradient of '", name, "' in the parameter's dtype and device");
  ParamState& st = state_[name];
  st.step += 1;
  if (group.weight_decay != 0.0) d = d + p * group.weight_decay;
  if (options_.momentum != 0.0) {
    Tensor& buf = st.buffers["momentum_buffer"];
    if (!buf.defined()) {
      buf = d.clone();
    } else {
      buf.mul_(options_.momentum).add_(d, 1.0 - options_.dampening);
    }
    d = options_.nesterov ? d + buf * options_.momentum : buf;
  }
  p.add_(d, -group.lr);
}

}  // namespace loom::optim

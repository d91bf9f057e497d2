// SGD with momentum, dampening, Nesterov and (coupled, L2-style) weight decay, in PyTorch's
// torch.optim.SGD formulation:
//   d = g + wd*p;  buf = (t == 1) ? d : momentum*buf + (1-dampening)*d;
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
//   SGD opt(model.named_parameters(), {.lr = 0.1, .momentum = 0.9});
#pragma once

#include "optim/Optimizer.h"

namespace loom::optim {

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  // Which parameters decay (see default_decay_filter); only used by the named-list constructor.
  DecayFilter decay_filter = default_decay_filter;
};

class SGD : public Optimizer {
 public:
  SGD(const std::vector<NamedParam>& params, const SGDOptions& options);
  SGD(std::vector<ParamGroup> groups, const SGDOptions& options);
  void step() override;
  std::vector<std::string> state_keys() const override {
    return options_.momentum != 0.0 ? std::vector<std::string>{"momentum_buffer"}
                                    : std::vector<std::string>{};
  }
  const SGDOptions& options() const { return options_; }

 private:
  void update(const std::string& name, const Tensor& p, const ParamGroup& group);
  SGDOptions options_;
};

}  // namespace loom::optim

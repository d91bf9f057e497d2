// AdamW (Loshchilov & Hutter; PyTorch's torch.optim.AdamW formulation) with decoupled weight decay:
//   p -= lr*wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// Contiguous f32 parameters use the backend's fused adamw_step kernel; other dtypes (f64 in tests,
// later bf16) use the same formula written with tensor ops.
//   AdamW opt(model.named_parameters(), {.lr = 6e-4, .beta2 = 0.95, .weight_decay = 0.1});
#pragma once

#include "optim/Optimizer.h"

namespace loom::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // Which parameters decay (see default_decay_filter); only used by the named-list constructor.
  DecayFilter decay_filter = default_decay_filter;
};

class AdamW : public Optimizer {
 public:
  // Splits `params` into a decayed and a non-decayed group with options.decay_filter.
  AdamW(const std::vector<NamedParam>& params, const AdamWOptions& options);
  // Explicit groups (each with its own lr / weight_decay); options supply betas and eps.
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options);
  void step() override;
  std::vector<std::string> state_keys() const override { return {"exp_avg", "exp_avg_sq"}; }
  const AdamWOptions& options() const { return options_; }

 private:
  void update(const std::string& name, const Tensor& p, const ParamGroup& group);
  AdamWOptions options_;
};

// The tensor-op form of one AdamW update (any floating dtype, any device); the spec the fused
// kernel must match. bias_correction{1,2} = 1 - beta{1,2}^t.
void adamw_reference_step(const Tensor& param, const Tensor& grad, const Tensor& m,
                          const Tensor& v, double lr, double beta1, double beta2, double eps,
                          double weight_decay, double bias_correction1, double bias_correction2);

}  // namespace loom::optim

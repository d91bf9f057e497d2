// LossScaler: dynamic loss scaling for fp16 training (torch.cuda.amp.GradScaler's policy). The
// loss is multiplied by `scale` before backward so small fp16 gradients do not flush to zero;
// unscale_() divides the gradients back and checks them for inf/NaN. On overflow the optimizer step
// is skipped and the scale backs off (x0.5, never below min_scale); after growth_interval good
// steps in a row it grows (x2). With a FoundInfReducer every rank combines its flag (max) before
// deciding, so all ranks skip the same steps. state()/set_state() go into checkpoints.
//
//   LossScaler scaler({}, [&](const Tensor& f) { comm.all_reduce(f, ReduceOp::Max); });
//   scaler.scale_loss(loss).backward();
//   bool stepped = scaler.step(opt);  // unscale_ + skip-or-step + update; then opt.zero_grad()
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor/Tensor.h"
#include "optim/Optimizer.h"

namespace loom::optim {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // good steps in a row before the scale grows
  double min_scale = 1.0;
  bool enabled = true;  // false: scale stays 1, nothing is checked (f32 / bf16 runs)
  bool dynamic = true;  // false: a fixed scale (overflowing steps are still skipped)
};

// What a checkpoint stores.
struct LossScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;  // good steps since the last growth or backoff
};

// Combines the found-inf flag (a one-element f32 tensor on the gradients' device, 1 = overflow)
// over ranks in place with a max all-reduce. Empty: single rank. optim/ sits below parallel/ in
// the link order, so the Communicator is reached through this hook.
using FoundInfReducer = std::function<void(const Tensor& found_inf)>;

class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions options = {}, FoundInfReducer reducer = {});

  double scale() const { return state_.scale; }
  bool enabled() const { return options_.enabled; }
  // loss * scale (differentiable); the loss itself when disabled.
  Tensor scale_loss(const Tensor& loss) const;

  // Divides every defined gradient by the scale in place and returns whether any rank found a
  // non-finite value. Once per step: a second call before update() throws ValueError.
  bool unscale_(const std::vector<Tensor>& grads);
  bool unscale_(Optimizer& opt);  // the .grad of every parameter of `opt` that has one

  // unscale_ (unless already done this step), opt.step() unless an overflow was found, then
  // update(). Returns true if the optimizer stepped.
  bool step(Optimizer& opt);
  // Adjusts the scale from this step's overflow flag and starts the next step.
  void update();

  // Whether the last unscale_ found an overflow (false before the first one).
  bool found_inf() const { return found_inf_; }
  int64_t skipped_steps() const { return skipped_; }

  LossScalerState state() const { return state_; }
  // Throws ValueError for a non-positive or non-finite scale or a negative tracker.
  void set_state(const LossScalerState& s);

 private:
  LossScalerOptions options_;
  FoundInfReducer reducer_;
  LossScalerState state_;
  bool unscaled_ = false;  // unscale_ ran in this step
  bool found_inf_ = false;
  int64_t skipped_ = 0;
};

}  // namespace loom::optim

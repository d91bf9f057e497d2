// GAE and the PPO value loss (see Ppo.h). GAE is a plain backward scan over each row in f64; the
// loss is composed from core ops so autograd gives its gradient (clamp passes no gradient outside
// its range and maximum sends ties to its first argument, which is the unclipped term here).
#include "rlhf/Ppo.h"

#include <vector>

#include "core/ops/Elementwise.h"
#include "core/util/Check.h"
#include "rlhf/Losses.h"

namespace loom::rlhf {

namespace {

void check_bt(const Tensor& x, const Tensor& like, const char* op, const char* name) {
  LOOM_CHECK(x.shape() == like.shape() && x.dim() == 2, op, ": expected ", name, " of shape ",
             like.shape(), " (B,T), got ", x.shape());
}

double masked_fraction(const Tensor& flags, const Tensor& mask) {
  return masked_mean(flags.to(mask.dtype()), mask).item();
}

}  // namespace

GaeOutput gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma,
              double lam) {
  check_bt(rewards, values, "gae", "rewards");
  check_bt(mask, values, "gae", "mask");
  const int64_t B = values.size(0), T = values.size(1);
  std::vector<double> r = rewards.to_vector<double>(), v = values.to_vector<double>(),
                      m = mask.to_vector<double>();
  std::vector<double> adv(size_t(B * T), 0.0), ret(size_t(B * T), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double next_value = 0.0, last = 0.0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const size_t i = size_t(b * T + t);
      if (m[i] == 0.0) continue;
      const double delta = r[i] + gamma * next_value - v[i];
      last = delta + gamma * lam * last;
      adv[i] = last;
      ret[i] = last + v[i];
      next_value = v[i];
    }
  }
  const Device dev = values.device();
  return {Tensor::from_vector(adv, values.shape(), dev).to(values.dtype()),
          Tensor::from_vector(ret, values.shape(), dev).to(values.dtype())};
}

ValueLoss ppo_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                         const Tensor& mask, double clip_range) {
  check_bt(old_values, values, "ppo_value_loss", "old_values");
  check_bt(returns, values, "ppo_value_loss", "returns");
  check_bt(mask, values, "ppo_value_loss", "mask");
  LOOM_CHECK(clip_range > 0, "ppo_value_loss: expected clip_range > 0, got ", clip_range);
  Tensor old = old_values.detach(), ret = returns.detach();
  Tensor v_clipped = old + clamp(values - old, -clip_range, clip_range);
  Tensor err = square(values - ret);
  Tensor err_clipped = square(v_clipped - ret);
  ValueLoss out;
  out.loss = masked_mean(maximum(err, err_clipped), mask) * 0.5;
  out.clip_fraction = masked_fraction(gt(err_clipped.detach(), err.detach()), mask);
  return out;
}

}  // namespace loom::rlhf

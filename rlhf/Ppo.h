// PPO pieces (Schulman et al. 2017; the per-token RLHF form of Ziegler et al. 2019 / InstructGPT):
// generalised advantage estimation and the critic's clipped value loss (a token-level mean over
// the response mask). The clipped surrogate policy loss is clipped_pg_loss (PolicyGradient.h),
// shared with the critic-free algorithms. Shapes: (B,T) for every per-token tensor; masks have
// the values' floating dtype.
//
//   GaeOutput g = gae(rewards, old_values, mask, /*gamma=*/1.0, /*lam=*/0.95);
//   Tensor adv = masked_whiten(g.advantages, mask);
//   PgLoss pl = clipped_pg_loss(new_logp, old_logp, adv, mask, {.clip_low = 0.2, .clip_high = 0.2});
//   ValueLoss vl = ppo_value_loss(new_values, old_values, g.returns, mask, /*clip=*/0.2);
//   Tensor loss = pl.loss + 0.5 * vl.loss;
#pragma once

#include "core/tensor/Tensor.h"

namespace loom::rlhf {

struct GaeOutput {
  Tensor advantages;  // (B,T), 0 outside the mask
  Tensor returns;     // (B,T) advantages + values, 0 outside the mask
};
// A_t = delta_t + gamma*lam*A_{t'}, delta_t = r_t + gamma*V_{t'} - V_t, where t' is the next
// masked position of the row (the episode ends after the last one: V = 0, A = 0). Unmasked
// positions are skipped (prompt, padding, or tokens between turns). No gradient; computed in f64.
GaeOutput gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma,
              double lam);

struct ValueLoss {
  Tensor loss;               // 0.5 * masked mean of max((v-R)^2, (v_clip-R)^2)
  double clip_fraction = 0;  // share of masked tokens where the clipped term was larger
};
// v_clip = old_values + clip(values - old_values, -clip_range, clip_range). values carry the
// gradient; old_values and returns are constants.
ValueLoss ppo_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns,
                         const Tensor& mask, double clip_range);

}  // namespace loom::rlhf

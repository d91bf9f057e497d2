// The clipped policy-gradient loss of the critic-free RL algorithms (GRPO, Dr. GRPO, DAPO, RLOO,
// REINFORCE++), with asymmetric clipping and the three loss aggregations in use, plus the KL-to-
// reference loss term. Built from core ops, so autograd gives the gradient w.r.t. logp.
// Shapes: (B,T) per-token tensors; mask (B,T) in the values' dtype (1 = response token).
//
//   PgLossOptions o{.clip_low = 0.2, .clip_high = 0.28};                       // DAPO
//   PgLoss pl = clipped_pg_loss(logp, old_logp, token_advantages(adv, mask), mask, o);
//   Tensor loss = pl.loss + kl_coef * kl_loss(logp, ref_logp, mask, KlEstimator::K3, o);
#pragma once

#include "core/tensor/Tensor.h"
#include "rlhf/Losses.h"

namespace loom::rlhf {

// How per-token losses l (B,T) become one scalar (verl's names):
//   TOKEN_MEAN               sum_{b,t} l*m / sum_{b,t} m        (DAPO eq. 12: token-level)
//   SEQ_MEAN_TOKEN_MEAN      (1/B) sum_b [sum_t l*m / max(1, sum_t m)]  (GRPO: sample-level)
//   SEQ_MEAN_TOKEN_SUM_NORM  (1/B) sum_b [sum_t l*m / norm_constant]    (Dr. GRPO, Liu et al.
//                            2025 "Understanding R1-Zero-Like Training": constant = max length)
// Rows with an empty mask count as 0 in the sequence modes (they still count in B, as in TRL).
enum class LossAggregation { TOKEN_MEAN, SEQ_MEAN_TOKEN_MEAN, SEQ_MEAN_TOKEN_SUM_NORM };
const char* loss_aggregation_name(LossAggregation a);

struct PgLossOptions {
  double clip_low = 0.2;   // ratio clipped to [1 - clip_low, 1 + clip_high] (DAPO "clip-higher":
  double clip_high = 0.2;  // clip_high = 0.28 with clip_low = 0.2)
  LossAggregation aggregation = LossAggregation::TOKEN_MEAN;
  double norm_constant = 0;  // SEQ_MEAN_TOKEN_SUM_NORM only: > 0, e.g. max_new_tokens
  // Divisor overrides for data parallelism / gradient accumulation (0 = the local count): the
  // global number of masked tokens (TOKEN_MEAN) or of sequences (the sequence modes), so that
  // summing the ranks' losses gives the global aggregate.
  double token_count = 0;
  double sequence_count = 0;
};

// Aggregates per-token values l (B,T) over the mask as described above; differentiable in l.
Tensor aggregate_loss(const Tensor& per_token, const Tensor& mask, const PgLossOptions& o);

struct PgLoss {
  Tensor loss;                    // aggregate of max(-A*r, -A*clip(r, 1-clip_low, 1+clip_high))
  double clip_fraction = 0;       // share of masked tokens where the clipped term is active
  double clip_low_fraction = 0;   //   of which r < 1 - clip_low (A < 0)
  double clip_high_fraction = 0;  //   of which r > 1 + clip_high (A > 0)
  double approx_kl = 0;           // masked token mean of 0.5 * (logp - old_logp)^2
};
// PPO-style clipped surrogate (Schulman et al. 2017 eq. 7) with r = exp(logp - old_logp).
// logp (B,T) carries the gradient; old_logp and advantages (B,T) are constants; values outside
// the mask are ignored (even inf: they are zeroed before exp, so no NaN leaks in). The fractions
// are token means over the mask whatever the aggregation. Ties (clipped == unclipped, e.g. r = 1
// in the first epoch) count as unclipped; inside the clip range both terms have the same gradient.
PgLoss clipped_pg_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& advantages,
                       const Tensor& mask, const PgLossOptions& o);

// KL-to-reference loss term (GRPO, DeepSeekMath sec. 4.1): the aggregate (o.aggregation) of
// kl_estimate(logp, ref_logp, mask, e). Multiply by the KL coefficient beta and add to the loss.
Tensor kl_loss(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator e,
               const PgLossOptions& o);

}  // namespace loom::rlhf

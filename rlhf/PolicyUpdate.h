// The update phase of the PPO stage for every algorithm: epochs x mini-batches of the clipped
// surrogate loss on a rollout's advantages (clipped_pg_loss: asymmetric clip, token or sequence
// aggregation), plus GRPO's KL-to-reference loss term, each mini-batch one optimizer step of the
// actor, and for PPO one of the critic (the clipped value loss). Losses are normalised by global
// counts (tokens or sequences of the loss mask over every data-parallel rank), so DP=n matches
// one process.
//   UpdateOptions o;  o.pg.clip_high = 0.28;  o.kl_coef = 0.04;  o.lr = lr;
//   UpdateStats st = policy_update(actor, /*critic=*/nullptr, rollout, o, step, device);
#pragma once

#include <cstdint>

#include "rlhf/Losses.h"
#include "rlhf/PolicyGradient.h"
#include "rlhf/Rollout.h"
#include "train/Learner.h"

namespace loom::rlhf {

struct UpdateOptions {
  PgLossOptions pg;  // clips, aggregation and norm_constant; the counts are set per mini-batch
  double kl_coef = 0.0;  // > 0: + kl_coef * kl_loss(logp, ref_logp, kl_estimator) (GRPO)
  KlEstimator kl_estimator = KlEstimator::K3;
  double value_clip = 0.2, entropy_coef = 0.0, temperature = 1.0;
  int64_t epochs = 4, mini_batches = 4;
  int64_t vocab = 0;  // log-probs over the first vocab ids (0 = all), as in build_rollout
  double lr = 1e-5;   // of every optimizer step
};

// Means over every mini-batch of every epoch and rank: the losses weighted by their aggregation's
// count (tokens or sequences), the token statistics by tokens.
struct UpdateStats {
  double policy_loss = 0, kl_loss = 0, value_loss = 0;
  double clip_fraction = 0, clip_high_fraction = 0, value_clip_fraction = 0;
  double entropy = 0, approx_kl = 0;
  double grad_norm = 0;  // the actor's, of the last mini-batch taken
};

// Mini-batch k holds the rows i with i % mini_batches == k (rows must divide evenly). A
// mini-batch with no loss tokens on any rank takes no step. `step` keys dropout. The critic is
// required for PPO advantages (r.returns) and must be null otherwise. Collective over the grid.
UpdateStats policy_update(train::Learner& actor, train::Learner* critic, const Rollout& r,
                          const UpdateOptions& o, int64_t step, Device device);

}  // namespace loom::rlhf

// Differentiable RLHF losses built from core ops (so autograd gives every gradient), plus the
// masked statistics they share. Shapes: B sequences, T tokens, V vocabulary. A `mask` is (B,T) of
// the same floating dtype as the values (1 = a response token that counts, 0 = ignored).
//
//   Tensor lp = token_logprobs(policy_logits, b.chosen_targets);        // (B,T), 0 where -100
//   Tensor loss = pairwise_reward_loss(r_chosen, r_rejected);           // -log sigmoid(rc - rr)
//   DpoOutput d = dpo_loss(pi_c, pi_r, ref_c, ref_r, /*beta=*/0.1);
#pragma once

#include <cstdint>

#include "core/tensor/Tensor.h"

namespace loom::rlhf {

// log(1 + exp(x)), stable for any x: max(x,0) + log(1 + exp(-|x|)); gradient sigmoid(x).
Tensor softplus(const Tensor& x);

// ---- masked statistics (mask broadcastable to x, same dtype) ---------------------------------
// sum(x*mask) / sum(mask); 0 when the mask is empty. Differentiable in x.
Tensor masked_mean(const Tensor& x, const Tensor& mask);
// Variance over the masked elements (Bessel-corrected when `unbiased` and more than one).
Tensor masked_var(const Tensor& x, const Tensor& mask, bool unbiased = true);
// (x - mean) / sqrt(var + 1e-8) over the masked elements, 0 outside the mask; shift_mean=false
// keeps the mean (only scales). Used for advantage whitening (no gradient flows through it).
Tensor masked_whiten(const Tensor& x, const Tensor& mask, bool shift_mean = true);
// 1.0 where labels != ignore_index, else 0.0, in `dtype`. labels (B,T) I64.
Tensor label_mask(const Tensor& labels, DType dtype, int64_t ignore_index = -100);
// values (B,T), index (B) I64 -> values[b, index[b]] (B); differentiable in values.
Tensor select_at(const Tensor& values, const Tensor& index);

// ---- reward model ---------------------------------------------------------------------------
// mean_b -log sigmoid(r_chosen[b] - r_rejected[b]) = mean softplus(r_rejected - r_chosen); (B)
// each.
Tensor pairwise_reward_loss(const Tensor& r_chosen, const Tensor& r_rejected);
struct RewardMetrics {
  double accuracy = 0;     // fraction of pairs with r_chosen > r_rejected (ties count as wrong)
  double mean_margin = 0;  // mean of r_chosen - r_rejected
};
RewardMetrics reward_metrics(const Tensor& r_chosen, const Tensor& r_rejected);

// ---- log-probs, KL, entropy -----------------------------------------------------------------
// logits (B,T,V), labels (B,T) I64 -> log softmax(logits)[b,t,labels[b,t]] (B,T), 0 where the
// label is ignore_index. Differentiable in logits.
Tensor token_logprobs(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);
// Per-token KL penalty estimate log pi - log pi_ref (k1), zeroed outside the mask; (B,T).
Tensor kl_penalty(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask);
// Entropy of softmax(logits) per position: -sum_v p log p; logits (B,T,V) -> (B,T).
Tensor entropy_from_logits(const Tensor& logits);
// PPO per-token rewards (no gradient): -kl_coef * (logp - ref_logp) on masked tokens, plus
// score[b] at the last masked token of row b. score (B), others (B,T). Rows with an empty mask
// get no score.
Tensor compute_rewards(const Tensor& score, const Tensor& logp, const Tensor& ref_logp,
                       const Tensor& mask, double kl_coef);

// ---- DPO (Rafailov et al. 2023) -------------------------------------------------------------
struct DpoOutput {
  Tensor loss;              // mean_b -log sigmoid(beta * (h_c - h_r)), h = logp_policy - logp_ref
  Tensor chosen_rewards;    // (B) beta * (pi_c - ref_c), detached
  Tensor rejected_rewards;  // (B) beta * (pi_r - ref_r), detached
  double accuracy = 0;      // fraction with chosen_reward > rejected_reward
  double mean_margin = 0;   // mean chosen_reward - rejected_reward
};
// Sequence log-probs (B) each (sum of token_logprobs over the response); ref_* are constants.
DpoOutput dpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                   const Tensor& ref_chosen, const Tensor& ref_rejected, double beta);

// ---- KL estimators (Schulman 2020, "Approximating KL Divergence") ----------------------------
// Per-token estimates of KL(pi || pi_ref) from tokens sampled from pi, with d = ref_logp - logp:
//   K1:  -d                  (= log pi - log pi_ref; unbiased, high variance, can be negative)
//   K2:  0.5 * d^2           (biased, low variance, >= 0)
//   K3:  exp(d) - d - 1      (unbiased, low variance, >= 0; GRPO's choice, DeepSeekMath sec. 4.1)
// NB: K3 grows like exp(ref_logp - logp) where the policy has dropped a token the reference
// likes; no clamp is applied here.
enum class KlEstimator { K1, K2, K3 };
const char* kl_estimator_name(KlEstimator e);  // "k1", "k2", "k3"
// (B,T) estimates, zeroed outside the mask; differentiable in logp (ref_logp is a constant).
Tensor kl_estimate(const Tensor& logp, const Tensor& ref_logp, const Tensor& mask, KlEstimator e);

// ---- DPO variants (same DpoOutput: loss, detached rewards, accuracy, mean margin) ------------
// Inputs are sequence log-probs (B) as for dpo_loss; h_c = pi_c - ref_c, h_r = pi_r - ref_r.
// IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
// Preferences", sampled IPO loss): mean_b (h_c - h_r - 1/(2 beta))^2; rewards beta*h as in DPO.
// (TRL feeds IPO length-averaged log-probs; pass those here to get its variant.)
DpoOutput ipo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                   const Tensor& ref_chosen, const Tensor& ref_rejected, double beta);
// Conservative DPO / label smoothing (Mitchell 2023, "A note on DPO with noisy preferences"):
// mean_b (1-eps) * -log sigmoid(beta*(h_c-h_r)) + eps * -log sigmoid(-beta*(h_c-h_r)),
// eps = label_smoothing in [0, 0.5); eps = 0 is dpo_loss.
DpoOutput cdpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                    const Tensor& ref_chosen, const Tensor& ref_rejected, double beta,
                    double label_smoothing);
// SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward"):
// reference-free, length-normalised: mean_b -log sigmoid(beta*(lp_c/|c| - lp_r/|r|) - gamma).
// lengths (B) are the response token counts (> 0), in the log-probs' dtype; rewards are
// beta*lp/|y| and the margin is their difference (gamma not subtracted). Paper defaults: beta 2.0
// to 2.5, gamma 0.5 to 1.5 (gamma/beta about 0.5).
DpoOutput simpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected,
                     const Tensor& chosen_lengths, const Tensor& rejected_lengths, double beta,
                     double gamma);

}  // namespace loom::rlhf

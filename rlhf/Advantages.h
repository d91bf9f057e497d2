// Advantage estimators of the critic-free RL algorithms and DAPO's sampling/reward shaping.
// Scores are per sample (N); the n samples of one prompt are contiguous (group g is samples
// [g*n, (g+1)*n)). No gradient flows through any of these; they are computed in f64 and returned
// in the scores' dtype. Per-sequence advantages (N) become per-token ones with token_advantages.
//
//   Tensor a = grpo_advantages(scores, {.group_size = 8});          // GRPO
//   Tensor a = grpo_advantages(scores, {.group_size = 8, .scale_by_std = false});  // Dr. GRPO
//   Tensor a = rloo_advantages(scores, 8);                          // RLOO
//   PgLoss pl = clipped_pg_loss(logp, old_logp, token_advantages(a, mask), mask, opts);
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::rlhf {

struct GroupAdvantageOptions {
  int64_t group_size = 0;    // n >= 2 samples per prompt
  bool scale_by_std = true;  // false: Dr. GRPO (no division by the group std)
  double eps = 1e-6;         // added to the std (verl's default; TRL uses 1e-4)
};
// GRPO (Shao et al. 2024, "DeepSeekMath", sec. 4.1.2, outcome supervision):
//   A_i = (r_i - mean_g) / (std_g + eps), std_g the Bessel-corrected std of the group (as
//   torch.std, which TRL and verl use). Dr. GRPO (Liu et al. 2025, sec. 3.2): A_i = r_i - mean_g.
// scores (N), N a multiple of group_size -> (N).
Tensor grpo_advantages(const Tensor& scores, const GroupAdvantageOptions& o);

// RLOO (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
// Learning from Human Feedback in LLMs"): A_i = r_i - (1/(n-1)) sum_{j != i} r_j over the group.
// scores (N) -> (N); n >= 2.
Tensor rloo_advantages(const Tensor& scores, int64_t group_size);

// Broadcasts per-sequence advantages adv (B) over the response tokens: adv[b] * mask[b,t] (B,T).
Tensor token_advantages(const Tensor& adv, const Tensor& mask);

struct ReinforcePpOutput {
  Tensor rewards;     // (B,T) -kl_coef * (logp - ref_logp) per masked token, + score at the last
  Tensor returns;     // (B,T) sum of rewards from t to the row's end (gamma^k weighted), masked
  Tensor advantages;  // (B,T) returns whitened over all masked tokens of the batch
};
// REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
// Models"): token reward r_t = -beta * KL_t (k1 = logp - ref_logp) plus the score at the last
// masked token (compute_rewards), returns G_t = sum_{t' >= t} gamma^(t'-t) r_t' over the masked
// tokens of the row (gamma = 1 in the paper), advantages = masked_whiten(G, mask): (G - mean) /
// sqrt(var + 1e-8), mean and Bessel-corrected var over every masked token of the (global) batch.
// NB: with data parallelism the whitening statistics must be global: whiten `returns` with
// all-reduced sums instead of using `advantages`.
ReinforcePpOutput reinforce_pp_advantages(const Tensor& score, const Tensor& logp,
                                          const Tensor& ref_logp, const Tensor& mask,
                                          double kl_coef, double gamma = 1.0);

// DAPO dynamic sampling (Yu et al. 2025, eq. 11: keep 0 < #correct < G): keep[g] is false when
// every score of group g lies within `tol` of each other (max - min <= tol), i.e. the group gives
// GRPO no signal. scores (N) -> one flag per group.
std::vector<bool> dynamic_sampling_keep(const Tensor& scores, int64_t group_size, double tol = 0.0);
// Sample indices (I64, for index_select) of the groups with keep[g] true.
Tensor kept_sample_indices(const std::vector<bool>& keep, int64_t group_size);

// DAPO overlong reward shaping (eq. 13), added to the score. With L = length in tokens,
// L_max = max_length, L_c = cache_length (0 < L_c <= L_max):
//   0                          if L <= L_max - L_c
//   ((L_max - L_c) - L) / L_c  if L_max - L_c < L <= L_max   (linear from 0 down to -1)
//   -1                         if L > L_max
// times `factor` (verl's overlong_penalty_factor; 1 in the paper).
std::vector<double> overlong_penalty(const std::vector<int64_t>& lengths, int64_t max_length,
                                     int64_t cache_length, double factor = 1.0);

}  // namespace loom::rlhf

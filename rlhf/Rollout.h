// One rank's RL rollout batch on the host, the model passes that fill it, score shaping and the
// advantage estimators of the PPO stage's four algorithms (PPO, GRPO, RLOO, REINFORCE++). Rows
// are (prompt, response) samples; the group_size samples of one prompt are contiguous. Model
// outputs live on the last pipeline stage (zeros elsewhere); statistics that span rows of every
// data-parallel rank (whitening) go through a SumReducer, so DP=n matches one process.
//   Rollout r = build_rollout({actor, reference, critic, grid}, prompts, responses, eos, ...);
//   r.scores = ...;  exclude_rows(r, keep);
//   compute_advantages(r, {.algorithm = RlAlgorithm::GRPO, .group_size = 8}, reduce);
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/RewardModel.h"
#include "parallel/ProcessGroups.h"

namespace loom::rlhf {

// Element-wise sum of `v` over the data-parallel ranks (in place); null for one process.
using SumReducer = std::function<void(std::vector<double>& v)>;

enum class RlAlgorithm { PPO, GRPO, RLOO, REINFORCE_PP };

// B rows padded to T tokens. Position t of a row holds the prediction of token t+1; the mask is 1
// where that token is a response token.
struct Rollout {
  int64_t rows = 0, T = 0;
  std::vector<int64_t> ids, targets;       // (B,T); targets -100 outside the response
  std::vector<float> mask;                 // (B,T) response tokens
  std::vector<float> loss_mask;            // (B,T) mask of the rows the loss sees (exclude_rows)
  std::vector<float> logp, ref_logp;       // (B,T) last stage
  std::vector<float> values;               // (B,T) critic values; empty without a critic
  std::vector<float> advantages, returns;  // (B,T) after compute_advantages (returns: PPO only)
  std::vector<double> kl, resp_len;        // (B) summed k1 KL (last stage), response tokens
  std::vector<double> scores;              // (B) the reward of each sample (set by the caller)
};

struct RolloutModels {
  models::GPT& actor;
  models::GPT& reference;
  models::RewardModel* critic;  // PPO's value model; null for the critic-free algorithms
  ProcessGrid& grid;            // the layout every model runs under
};

// The rollout of prompt i followed by response i (both non-empty, total <= block_size): actor and
// reference log-probs of the response tokens (logits / temperature, over the first `vocab` ids
// when vocab > 0: the ids sampling may draw), critic values and the per-row k1 KL. loss_mask =
// mask. No gradient. Collective over the grid's TP and PP groups.
Rollout build_rollout(RolloutModels m, const std::vector<std::vector<int32_t>>& prompts,
                      const std::vector<std::vector<int64_t>>& responses, int64_t pad_id,
                      double temperature, Device device, int64_t vocab = 0);

// How far the generation engine's log-probs of the sampled tokens lie from the training forward's
// (r.logp): |engine - training| over every response token of this rank (last pipeline stage).
// engine[b][k] is the log-prob of row b's response token k; row b's prompt has prompt_len[b]
// tokens. A gap beyond rounding means rollouts were drawn off-policy (top-k / top-p, or
// numerics that differ between the cached and the full forward).
struct LogprobGap {
  double sum = 0.0, count = 0.0, max = 0.0;
};
LogprobGap logprob_gap(const Rollout& r, const std::vector<int64_t>& prompt_len,
                       const std::vector<std::vector<double>>& engine);

// The reward model's score at each row's last token (B) on the last pipeline stage (zeros
// elsewhere). Collective over the grid's TP and PP groups.
std::vector<double> reward_model_scores(models::RewardModel& reward, ProcessGrid& grid,
                                        const Rollout& r, Device device);

// Leaves the rows with keep[b] false out of the loss (their loss_mask becomes 0).
void exclude_rows(Rollout& r, const std::vector<bool>& keep);

// How responses cut without EOS and over-long ones change the score and the loss.
struct ShapingOptions {
  int64_t eos_id = 0;
  int64_t max_new_tokens = 0;
  bool mask_truncated = true;        // responses without EOS stay out of the loss
  double missing_eos_penalty = 0.0;  // subtracted from the score of a response without EOS
  int64_t overlong_buffer = 0;       // DAPO overlong shaping (0 = off), see overlong_penalty
  double overlong_factor = 1.0;
  int64_t group_size = 1;
  bool drop_equal_groups = false;  // groups whose (shaped) scores are all equal leave the loss
};
struct ShapedScores {
  std::vector<double> scores;  // (B) raw + overlong penalty - missing_eos_penalty
  std::vector<bool> keep;      // (B) rows the loss sees
  int64_t no_eos = 0;          // rows without EOS
  int64_t equal_groups = 0;    // groups whose scores are all equal (group_size >= 2)
};
ShapedScores shape_scores(const std::vector<double>& raw,
                          const std::vector<std::vector<int64_t>>& responses,
                          const ShapingOptions& o);

struct AdvantageOptions {
  RlAlgorithm algorithm = RlAlgorithm::PPO;
  double kl_coef = 0.0;       // PPO, RLOO, REINFORCE_PP: weight of the k1 KL in the reward
  double gamma = 1.0;         // PPO, REINFORCE_PP
  double lam = 0.95;          // PPO
  int64_t group_size = 1;     // GRPO, RLOO
  bool scale_by_std = true;   // GRPO (false: Dr. GRPO)
};
// Advantages (B,T) over r.loss_mask from r.scores (last stage):
//   PPO           per-token reward -kl_coef * k1 + score at the last token, GAE with the critic's
//                 values, then whitened over every rank's loss tokens (returns: GAE's)
//   GRPO          grpo_advantages of the scores per group, on each response token
//   RLOO          rloo_advantages of score - kl_coef * (the row's summed k1), on each token
//   REINFORCE_PP  reinforce_pp_advantages' returns, whitened over every rank's loss tokens
void compute_advantages(Rollout& r, const AdvantageOptions& o, const SumReducer& reduce);

}  // namespace loom::rlhf

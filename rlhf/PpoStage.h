// The PPO stage of RLHF (InstructGPT recipe): an actor (the trainer's GPT, from the SFT checkpoint)
// optimised against a frozen reward model under a KL leash to a frozen reference, with a critic
// (a RewardModel used per token) for GAE. One trainer step = one PPO iteration:
//   rollout: prompts -> generate on the live actor -> score_rollout (logp, ref logp, values,
//            score, per-token reward -beta*KL + score at the last token) -> GAE -> whitening
//   update:  epochs x mini-batches of the clipped surrogate + clipped value loss; after each
//            mini-batch's backward the trainer's `update` callback reduces grads and steps both
//            optimizers (it owns them, so checkpoints and the LR schedule stay in one place).
// Data parallel: each rank generates its own prompts; whitening, loss normalisation (global token
// counts) and metrics use `reduce` (an element-wise sum over ranks), so DP=n matches one process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/Generate.h"
#include "models/RewardModel.h"
#include "rlhf/KlController.h"
#include "rlhf/Stages.h"

namespace loom::rlhf {

// Element-wise sum of `v` over the data-parallel ranks (in place); null for one process.
using SumReducer = std::function<void(std::vector<double>& v)>;

// One rank's rollout batch on the host: B rows padded to T tokens. Position t of a row holds the
// prediction of token t+1; the response mask is 1 where that token is a response token.
struct PpoRollout {
  int64_t rows = 0, T = 0;
  std::vector<int64_t> ids, targets;           // (B,T); targets -100 outside the response
  std::vector<float> mask, logp, ref_logp;     // (B,T)
  std::vector<float> values, rewards;          // (B,T)
  std::vector<float> advantages, returns;      // (B,T) after compute_advantages
  std::vector<double> scores, kl, resp_len;    // (B): RM score, summed KL, response tokens
};

struct PpoModels {
  models::GPT& actor;
  models::GPT& reference;
  models::RewardModel& critic;
  models::RewardModel& reward;
};

// Builds the rollout of prompt i followed by response i (both non-empty, total <= block_size):
// actor and reference log-probs of the response tokens (logits / temperature, over the first
// `vocab` logits when vocab > 0: the ids sampling may draw), critic values, the reward model's
// score at the last token minus missing_eos_penalty for a response that does not end with pad_id
// (the EOS: cut at max_new_tokens, a sequence the reward model never saw in training) and
// compute_rewards(..., kl_coef). No gradient.
PpoRollout score_rollout(PpoModels m, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<std::vector<int64_t>>& responses, int64_t pad_id,
                         double temperature, double kl_coef, Device device, int64_t vocab = 0,
                         double missing_eos_penalty = 0.0);

// GAE per row, then advantages whitened over the response tokens of all ranks' rows.
void compute_advantages(PpoRollout& r, double gamma, double lam, const SumReducer& reduce);

struct PpoUpdateOptions {
  double clip = 0.2, value_clip = 0.2, entropy_coef = 0.0, temperature = 1.0;
  int64_t epochs = 4, mini_batches = 4;
  int64_t vocab = 0;  // log-probs over the first vocab logits (0 = all), as in score_rollout
  int dp_size = 1;
};
// Token-weighted means over every mini-batch of every epoch (and every rank).
struct PpoUpdateStats {
  double policy_loss = 0, value_loss = 0, clip_fraction = 0, value_clip_fraction = 0;
  double entropy = 0, approx_kl = 0;
};
// The PPO epochs: mini-batch k holds the rows i with i % mini_batches == k (rows must divide
// evenly). Calls update() after each mini-batch's backward (actor and critic grads are set).
PpoUpdateStats ppo_update(PpoModels m, const PpoRollout& r, const PpoUpdateOptions& o,
                          const SumReducer& reduce, Device device,
                          const std::function<void()>& update);

struct PpoIteration {
  double loss = 0;  // policy_loss + value_loss
  StageMetrics metrics;
};

class PpoStage : public Stage {
 public:
  // `actor` is the trainer's model (already initialised from init_from). Loads the prompts, the
  // reference (init_from), the reward model (ppo.reward_model) and the critic (ppo.critic_init).
  PpoStage(const config::RunConfig& cfg, models::GPT& actor, StageContext ctx, SumReducer reduce);
  ~PpoStage() override;

  // One iteration at trainer step `step` (1-based); metrics are global over the DP ranks.
  PpoIteration iterate(int64_t step, const std::function<void()>& update);

  StageStep next_step() override;  // not used by PPO (InternalError)
  StageMetrics evaluate(int64_t) override { return {}; }
  std::string describe() const override { return desc_; }

  models::RewardModel& critic() { return *critic_; }
  KlController& kl_controller() { return *kl_; }
  const std::vector<std::vector<int32_t>>& prompts() const { return prompts_; }

 private:
  PpoModels models();
  models::GPT& actor_;
  std::unique_ptr<models::GPT> reference_;
  std::unique_ptr<models::RewardModel> critic_, reward_;
  std::unique_ptr<KlController> kl_;
  SumReducer reduce_;
  std::vector<std::vector<int32_t>> prompts_;
  int64_t pad_id_ = 0, batch_ = 1, vocab_ = 0;
  double gamma_ = 1.0, lam_ = 0.95, missing_eos_penalty_ = 0.0;
  PpoUpdateOptions upd_;
  models::SamplingOptions sampling_;
  std::string desc_;
};

}  // namespace loom::rlhf

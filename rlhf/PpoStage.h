// The PPO stage of RLHF (InstructGPT recipe): an actor (the trainer's policy, from the SFT
// checkpoint) optimised against a frozen reward model under a KL leash to a frozen reference, with
// a critic (a RewardModel used per token, trained by a Learner of its own) for GAE. Every model
// runs under the run's TP x PP x DP layout. One trainer step = one PPO iteration:
//   rollout: prompts -> generate on the live actor -> score_rollout (logp, ref logp, values,
//            score, per-token reward -beta*KL + score at the last token) -> GAE -> whitening
//   update:  epochs x mini-batches of the clipped surrogate (actor) and the clipped value loss
//            (critic), each an optimizer step of its learner.
// Scores, advantages and losses live on the last pipeline stage; metrics are sent from there to
// every stage. Data parallel: each rank generates its own prompts; whitening, loss normalisation
// (global token counts) and metrics sum over the DP group, so DP=n matches one process.
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
// prediction of token t+1; the response mask is 1 where that token is a response token. The
// model outputs (logp ... returns) hold values on the last pipeline stage, zeros elsewhere.
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
  ProcessGrid& grid;  // the layout every model runs under
};

// Builds the rollout of prompt i followed by response i (both non-empty, total <= block_size):
// actor and reference log-probs of the response tokens (logits / temperature, over the first
// `vocab` ids when vocab > 0: the ids sampling may draw), critic values, the reward model's
// score at the last token minus missing_eos_penalty for a response that does not end with pad_id
// (the EOS: cut at max_new_tokens, a sequence the reward model never saw in training) and
// compute_rewards(..., kl_coef). No gradient. Collective over the grid's TP and PP groups.
PpoRollout score_rollout(PpoModels m, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<std::vector<int64_t>>& responses, int64_t pad_id,
                         double temperature, double kl_coef, Device device, int64_t vocab = 0,
                         double missing_eos_penalty = 0.0);

// GAE per row, then advantages whitened over the response tokens of all ranks' rows.
void compute_advantages(PpoRollout& r, double gamma, double lam, const SumReducer& reduce);

struct PpoUpdateOptions {
  double clip = 0.2, value_clip = 0.2, entropy_coef = 0.0, temperature = 1.0;
  int64_t epochs = 4, mini_batches = 4;
  int64_t vocab = 0;  // log-probs over the first vocab ids (0 = all), as in score_rollout
  double lr = 1e-5;   // of both optimizer steps per mini-batch
};
// Token-weighted means over every mini-batch of every epoch (and every rank).
struct PpoUpdateStats {
  double policy_loss = 0, value_loss = 0, clip_fraction = 0, value_clip_fraction = 0;
  double entropy = 0, approx_kl = 0;
  double grad_norm = 0;  // the actor's, of the last mini-batch
};
// The PPO epochs: mini-batch k holds the rows i with i % mini_batches == k (rows must divide
// evenly); each mini-batch is one optimizer step of the actor and one of the critic. `step` keys
// dropout. Collective over the grid.
PpoUpdateStats ppo_update(train::Learner& actor, train::Learner& critic, const PpoRollout& r,
                          const PpoUpdateOptions& o, int64_t step, Device device);

class PpoStage : public ExampleStage {
 public:
  // `policy` is the trainer's actor (already initialised from init_from). Loads the prompts, the
  // reference (init_from), the reward model (ppo.reward_model) and the critic (ppo.critic_init).
  PpoStage(train::StageContext& ctx, train::Learner& policy);
  ~PpoStage() override;

  // One iteration at trainer step `step` (1-based); metrics are global over the DP ranks.
  train::StepResult run_step(int64_t step, double lr, train::Learner& policy) override;
  Metrics evaluate(train::Learner&, int64_t) override { return {}; }
  std::string describe() const override { return desc_; }
  std::string state() const override;
  void set_state(const std::string& trainer_state_json, const std::string& source) override;
  std::vector<std::pair<std::string, train::Learner*>> learners() override {
    return {{"critic", critic_.get()}};
  }

  train::Learner& critic() { return *critic_; }
  KlController& kl_controller() { return *kl_; }
  const std::vector<std::vector<int32_t>>& prompts() const { return prompts_; }

 private:
  PpoModels models(train::Learner& policy);
  std::unique_ptr<models::GPT> reference_;
  std::unique_ptr<models::RewardModel> reward_;
  std::unique_ptr<train::Learner> critic_;
  std::unique_ptr<KlController> kl_;
  std::vector<std::vector<int32_t>> prompts_;
  int64_t pad_id_ = 0, batch_ = 1, vocab_ = 0;
  double gamma_ = 1.0, lam_ = 0.95, missing_eos_penalty_ = 0.0;
  PpoUpdateOptions upd_;
  models::SamplingOptions sampling_;
  std::string desc_;
};

}  // namespace loom::rlhf

// The RL stage of RLHF (stage PPO), one of four algorithms by ppo.algorithm, all sharing the
// rollouts, the reference model, the composed reward, the update loop and checkpoint/resume:
//   PPO           InstructGPT: a critic (a RewardModel used per token, trained by a Learner of its
//                 own) for GAE, k1 KL to the reference in the per-token reward
//   GRPO          group-relative advantages over group_size samples per prompt, the KL to the
//                 reference (k1 / k2 / k3) as a loss term; Dr. GRPO's and DAPO's options
//   RLOO          leave-one-out baseline over the group, k1 KL subtracted from the score
//   REINFORCE_PP  per-token k1 KL reward, returns whitened over the batch
// One trainer step = one iteration: sample group_size responses per prompt on the live actor ->
// actor / reference log-probs (Rollout.h) -> reward: the weighted ppo.reward sources
// (RolloutRewards.h) -> shaping (responses cut without EOS, over-long ones, equal-reward groups)
// -> advantages -> epochs x mini-batches of optimizer steps (PolicyUpdate.h). Per iteration it
// reports reward (total and per source), KL, entropy, response length, clip fractions, the
// truncated fraction, the rollout / training log-prob gap and per-phase times, logs RlHealth
// warnings naming the field to change, and
// every ppo.sample_interval iterations writes rank 0's samples to
// <output_dir>/samples/step_<N>.jsonl. Every model runs under the run's TP x PP x DP layout; each
// DP rank samples its own prompts; whitening, loss normalisation and metrics sum over DP, so DP=n
// matches one process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/Generate.h"
#include "rlhf/KlController.h"
#include "rlhf/PolicyUpdate.h"
#include "rlhf/RlHealth.h"
#include "rlhf/Rollout.h"
#include "rlhf/RolloutRewards.h"
#include "rlhf/Stages.h"
#include "rlhf/ValueModels.h"

namespace loom::rlhf {

class PpoStage : public ExampleStage {
 public:
  // `policy` is the trainer's actor (already initialised from init_from). Loads the prompts, the
  // reference (init_from), the reward sources (with the reward model ppo.reward_model when one
  // is a source) and, for PPO, the critic (ppo.critic_init); the reward model and the critic each
  // of its own source's shape (ValueModels.h).
  PpoStage(train::StageContext& ctx, train::Learner& policy);
  ~PpoStage() override;

  // One iteration at trainer step `step` (1-based); metrics are global over the DP ranks.
  train::StepResult run_step(int64_t step, double lr, train::Learner& policy) override;
  Metrics evaluate(train::Learner&, int64_t) override { return {}; }
  std::string describe() const override { return desc_; }
  std::string state() const override;
  void set_state(const std::string& trainer_state_json, const std::string& source) override;
  std::vector<std::pair<std::string, train::Learner*>> learners() override;

 private:
  struct Samples;  // one iteration's prompts and responses on this rank
  void set_options(const config::RunConfig& cfg);
  void load_prompts(const config::RunConfig& cfg, int64_t block_size);
  Samples sample(int64_t step, models::GPT& actor);
  WeightedScores score(const Samples& s, const Rollout& r);
  Metrics iteration_metrics(int64_t step, const Samples& s, const Rollout& r,
                            const WeightedScores& ws, const ShapedScores& sh,
                            train::Learner& policy);
  void warn_if_unhealthy(const RlIterationMetrics& m);
  void write_samples(int64_t step, const Samples& s, const WeightedScores& ws,
                     const ShapedScores& sh) const;

  const data::Tokenizer* tok_ = nullptr;  // the run's (StageContext::tokenizer)
  std::vector<std::vector<int32_t>> prompts_;  // token ids (chat template applied)
  std::vector<RewardSample> records_;          // each prompt's text and record fields
  std::unique_ptr<models::GPT> reference_;
  std::unique_ptr<RewardScorer> reward_model_;  // null unless a source uses it
  std::unique_ptr<train::Learner> critic_;             // PPO only
  std::unique_ptr<KlController> kl_;
  std::unique_ptr<RolloutRewards> rewards_;
  int64_t pad_id_ = 0, vocab_ = 0, batch_ = 1, group_ = 1, sample_interval_ = 0;
  ShapingOptions shaping_;
  AdvantageOptions adv_;
  UpdateOptions upd_;
  models::SamplingOptions sampling_;
  HealthMonitor health_;
  std::string desc_;
};

}  // namespace loom::rlhf

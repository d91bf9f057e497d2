// The reward of the PPO stage's samples: the weighted sources of ppo.reward (a reward model, rule
// rewards, external checkers). They are built and scored on one rank per data-parallel replica,
// the scorer (tensor rank 0 of the last pipeline stage, which holds the reward model's scores),
// and the values are broadcast to the replica's other ranks. A source that fails there (a checker
// that crashes, hangs past its timeout or prints garbage; a bad regex) is raised on every rank of
// the job, so no rank waits on a collective for it; the trainer then stops before the next
// checkpoint, leaving the last one as it was.
//   RolloutRewards rewards(cfg.ppo(), grid);
//   WeightedScores s = rewards.score([&] { return samples; }, rows);  // the same on every rank
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "config/Config.pb.h"
#include "parallel/ProcessGroups.h"
#include "rlhf/RewardSources.h"

namespace loom::rlhf {

// The RewardSpec of one ppo.reward entry (defaults applied).
RewardSpec reward_spec(const config::RewardSourceConfig& r);

class RolloutRewards {
 public:
  // Builds the sources on the scorer (starting any checker there). A source that cannot be built
  // is a ConfigError naming its ppo.reward entry, on every rank. Collective over the world.
  RolloutRewards(const config::PpoConfig& p, ProcessGrid& grid);

  bool uses_reward_model() const { return uses_reward_model_; }
  bool is_scorer() const { return scorer_; }
  // The weighted scores of `n` samples; make_samples() (the prompt, response and record fields of
  // each, with its model_score when uses_reward_model()) runs on the scorer only. The same on
  // every rank of the replica. Collective over the world.
  WeightedScores score(const std::function<std::vector<RewardSample>()>& make_samples, size_t n);
  // "1*exact_match + 0.5*format_penalty", for the stage's description.
  std::string describe() const;

 private:
  ProcessGrid& grid_;
  bool scorer_ = false, uses_reward_model_ = false;
  std::vector<std::string> names_;
  std::vector<double> weights_;
  WeightedReward sources_;  // empty except on the scorer
};

// Collective over `world`: when this rank's `error` is set or another rank's is, every rank throws
// (this rank's own error; the others a DataError with the failing rank's message). No-op when no
// rank failed.
void raise_on_every_rank(Communicator& world, const std::exception_ptr& error);

}  // namespace loom::rlhf

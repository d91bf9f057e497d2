// The RLHF stages the trainer runs through its Stage interface (train/Stage.h), each under every
// TP x PP x DP layout:
//   SFT     cross entropy on response tokens only (prompt masked, optional packing)
//   REWARD  RewardModel, pairwise loss -log sigmoid(r_chosen - r_rejected) on preference pairs
//   DPO     policy against a frozen reference under the same layout: DPO, IPO, cDPO or the
//           reference-free SimPO (dpo.loss_type); held-out preference accuracy and margin
//   PPO     RL on prompts: PPO, GRPO, RLOO or REINFORCE++ (ppo.algorithm), see PpoStage.h
// A stage owns its tokenised examples and a shuffled per-epoch order sharded over data-parallel
// ranks (its position goes into checkpoints like the pretraining loader's). Losses are
// objectives on the final hidden states of the last pipeline stage (MicroBatch.objective);
// metrics computed there are sent to every stage and averaged over DP ranks.
//   Trainer t(cfg, world, rlhf::make_stage);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/Tokenizer.h"
#include "rlhf/ChatTemplate.h"
#include "train/Stage.h"

namespace loom::rlhf {

using train::Metrics;

// Where a stage is in its example order: epoch and examples consumed in that epoch (over all
// ranks). Saved as the checkpoint's "loader" entry.
struct StagePosition {
  int64_t epoch = 0;
  int64_t position = 0;
};

// The example order shared by the stages that read JSONL examples.
class ExampleStage : public train::Stage {
 public:
  StagePosition position() const { return pos_; }
  std::string state() const override;
  void set_state(const std::string& trainer_state_json, const std::string& source) override;

 protected:
  explicit ExampleStage(train::StageContext& ctx);
  // This rank's example indices for the next micro-batch of `batch` examples out of n, in the
  // epoch's order (shuffled from seed + epoch when shuffle); a new epoch starts when fewer than
  // batch * dp_size examples remain.
  std::vector<size_t> next_indices(size_t n, int64_t batch);
  // Averages per-micro-batch metric sums (computed on the last pipeline stage) over micro-batches
  // and DP ranks, the same on every rank.
  Metrics reduce_metrics(const std::vector<std::string>& names, std::vector<double> sums,
                         int64_t micro_batches, train::Learner& policy) const;
  train::StageContext& ctx_;
  StagePosition pos_;
  int64_t grad_accum_ = 1;  // micro-batches per optimizer step

 private:
  std::vector<size_t> order_;
  int64_t order_epoch_ = -1;
};

// The stage of ctx.cfg().stage() (SFT, REWARD, DPO or PPO) training `policy` (a RewardModel
// for REWARD). Loads the tokenizer from cfg.data.tokenizer_* and the JSONL files; ConfigError for
// a missing tokenizer or an unsupported template, DataError "<file>:<line>: ..." for bad lines.
// Null for PRETRAIN. A train::StageFactory.
std::unique_ptr<train::Stage> make_stage(train::StageContext& ctx, train::Learner& policy);

// The chat template called `name`: "plain" (prompt then response + EOT, nothing added) or
// "chat" (the <|user|> / <|assistant|> defaults of ChatTemplate). ConfigError otherwise.
ChatTemplate template_named(const std::string& name);

// The run's tokenizer (StageContext::tokenizer), which must have an end-of-text token unless the
// chat template is the model's own ("hf"); ConfigError otherwise.
const data::Tokenizer& stage_tokenizer(const train::StageContext& ctx);

}  // namespace loom::rlhf

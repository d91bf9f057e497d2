// The data and loss of the fine-tuning stages that train::Trainer runs besides pretraining:
//   SFT     GPT, cross entropy on response tokens only (prompt masked, optional packing)
//   REWARD  RewardModel, pairwise loss -log sigmoid(r_chosen - r_rejected) on preference pairs
//   DPO     GPT policy against a frozen reference GPT, DPO loss with beta
// A Stage owns its tokenised examples, a shuffled per-epoch order sharded over data-parallel ranks
// (its position goes into checkpoints like the pretraining loader's) and, for DPO, the reference.
//   auto stage = make_stage(cfg, model, {.dp_rank = 0, .dp_size = 1, .load_weights = fn});
//   StageStep st = stage->next_step();  st.loss.backward();
//   StageMetrics m = stage->evaluate(20);   // {"val_loss", ...}; empty without a val split
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"
#include "models/GPT.h"
#include "rlhf/ChatTemplate.h"

namespace loom::config {
class RunConfig;
}

namespace loom::rlhf {

using StageMetrics = std::vector<std::pair<std::string, double>>;

struct StageStep {
  Tensor loss;           // scalar, differentiable in the model's parameters
  StageMetrics metrics;  // extra per-micro-batch metrics (the trainer averages them)
};

// Where the stage is in its example order: epoch and examples consumed in that epoch (over all
// ranks). Saved as the checkpoint's "loader" entry.
struct StagePosition {
  int64_t epoch = 0;
  int64_t position = 0;
};

struct StageContext {
  Device device = Device::cpu();
  int dp_rank = 0;
  int dp_size = 1;
  // Loads a Loom checkpoint dir or "hf:DIR" into a GPT of the run's model config (DPO reference).
  std::function<void(const std::string& source, models::GPT& model)> load_weights;
};

class Stage {
 public:
  virtual ~Stage() = default;
  // Loss of this rank's next training micro-batch (advances the order).
  virtual StageStep next_step() = 0;
  // Mean metrics over up to max_batches micro-batches of the validation split (model in eval
  // mode, no gradients): "val_loss" first. Empty when the stage has no validation split.
  virtual StageMetrics evaluate(int64_t max_batches) = 0;
  // A one-line description of the loaded data (examples, skipped, truncated).
  virtual std::string describe() const = 0;
  StagePosition position() const { return pos_; }
  void set_position(StagePosition p) { pos_ = p; }

 protected:
  // This rank's example indices for the next micro-batch of `batch` examples out of n, in the
  // epoch's order (shuffled from seed + epoch when shuffle); a new epoch starts when fewer than
  // batch * dp_size examples remain.
  std::vector<size_t> next_indices(size_t n, int64_t batch);
  StagePosition pos_;
  StageContext ctx_;
  uint64_t seed_ = 0;
  bool shuffle_ = true;

 private:
  std::vector<size_t> order_;
  int64_t order_epoch_ = -1;
};

// The stage of cfg.stage() (SFT, REWARD or DPO) training `model` (a models::RewardModel for
// REWARD). Loads the tokenizer from cfg.data.tokenizer_* and the JSONL files; ConfigError for
// a missing tokenizer or an unsupported template, DataError "<file>:<line>: ..." for bad lines.
std::unique_ptr<Stage> make_stage(const config::RunConfig& cfg, models::GPT& model,
                                  StageContext ctx);

// The chat template called `name`: "plain" (prompt then response + EOT, nothing added) or
// "chat" (the <|user|> / <|assistant|> defaults of ChatTemplate). ConfigError otherwise.
ChatTemplate template_named(const std::string& name);

}  // namespace loom::rlhf

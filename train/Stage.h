// Stage: what a training stage plugs into the Trainer. The trainer owns the run (layout, policy
// Learner, LR schedule, evaluation cadence, metrics, checkpoints, resume); a stage owns its data
// and its loss. Pretraining is train/'s own stage; SFT, reward modelling, DPO and PPO live in
// rlhf/ and reach the trainer only through this interface (rlhf/ sits above train/). Every stage
// trains through Learner::forward_backward / Learner::step, so every stage runs under every TP x
// PP x DP layout.
//   auto t = Trainer(cfg, world, [](StageContext& ctx, Learner& policy) {
//     return std::make_unique<MyStage>(ctx, policy);
//   });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/Config.pb.h"
#include "data/Tokenizer.h"
#include "models/GPT.h"
#include "parallel/ProcessGroups.h"
#include "train/Learner.h"

namespace loom::train {

using Metrics = std::vector<std::pair<std::string, double>>;

struct StepResult {
  double loss = 0;       // logged loss, equal on every rank
  double grad_norm = 0;  // of the policy's (last) update; NaN when skipped by loss scaling
  Metrics metrics;       // extra per-step metrics, equal on every rank
};

// What the trainer offers a stage: the run's config and layout, and models built under it.
class StageContext {
 public:
  StageContext(const config::RunConfig& cfg, ProcessGrid& grid, Device device)
      : cfg_(cfg), grid_(grid), device_(device) {}
  const config::RunConfig& cfg() const { return cfg_; }
  ProcessGrid& grid() const { return grid_; }
  Device device() const { return device_; }
  int dp_rank() const { return grid_.dp_rank(); }
  int dp_size() const { return grid_.dp_size(); }
  // The run's model shape (cfg.model, the vocabulary padded for the layout).
  models::GPTConfig model_config() const;
  // This rank's part of a model of `config` (a RewardModel when `reward`), initialised from
  // `source`: a Loom checkpoint directory, "hf:DIR", or "" for a fresh init from the run's seed.
  // A reward head the source lacks keeps its fresh initial values.
  std::unique_ptr<models::GPT> make_model(const models::GPTConfig& config, bool reward,
                                          const std::string& source) const;
  // Loads `source` (as make_model) into an existing model.
  void load_weights(const std::string& source, models::GPT& model) const;
  // A learner (optimizer, gradient sync, schedule) for a further trained model (PPO's critic).
  std::unique_ptr<Learner> make_learner(std::unique_ptr<models::GPT> model) const;
  // The run's tokenizer (data.tokenizer_json, or data.tokenizer_vocab + data.tokenizer_merges),
  // parsed once, on first use. ConfigError when the run names none, or when it has more tokens
  // than model.vocab_size.
  const data::Tokenizer& tokenizer() const;

 private:
  const config::RunConfig& cfg_;
  ProcessGrid& grid_;
  Device device_;
  mutable std::optional<data::Tokenizer> tokenizer_;
};

class Stage {
 public:
  virtual ~Stage() = default;
  // One optimizer step (PRETRAIN, SFT, REWARD, DPO) or one iteration of several updates (PPO) of
  // `policy` at `step` (1-based) with learning rate `lr`.
  virtual StepResult run_step(int64_t step, double lr, Learner& policy) = 0;
  // Validation metrics over up to max_batches batches ("val_loss" first; the model is in eval
  // mode), equal on every rank; empty when the stage has no validation split.
  virtual Metrics evaluate(Learner& policy, int64_t max_batches) = 0;
  // A one-line description of the loaded data (examples, skipped, truncated).
  virtual std::string describe() const = 0;
  // What a checkpoint keeps beside the models (data position, KL coefficient, ...): a JSON object
  // whose keys join the checkpoint's trainer state; set_state() gets that whole state back.
  virtual std::string state() const = 0;
  virtual void set_state(const std::string& trainer_state_json, const std::string& source) = 0;
  // Further trained models, checkpointed as "<prefix>/..." and "<prefix>_optim/...".
  virtual std::vector<std::pair<std::string, Learner*>> learners() { return {}; }
};

// Builds the stage of cfg.stage() for `policy` (the trainer's model: a RewardModel for REWARD).
// Returns null for a stage it does not know (the trainer then reports it).
using StageFactory =
    std::function<std::unique_ptr<Stage>(StageContext& ctx, Learner& policy)>;

}  // namespace loom::train

// The training loop shared by every stage: builds the model, optimizer, LR schedule and data
// loaders from a resolved RunConfig, resumes from the newest complete checkpoint when asked, and
// runs forward / backward / clip / step with gradient accumulation, periodic evaluation (val loss,
// perplexity), metrics (JSONL, TensorBoard), a progress display and atomic checkpoints.
//   RunConfig cfg = loom::config::resolve("configs/tiny.pbtxt", {}, /*world=*/1);
//   Trainer t(cfg);
//   TrainSummary s = t.run();
// Resuming (checkpoint.resume = "auto") continues bitwise: parameters, optimizer moments, step,
// data-loader position and dropout RNG all come from the checkpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/DataLoader.h"
#include "launch/config/Config.pb.h"
#include "models/GPT.h"
#include "optim/LrSchedule.h"
#include "optim/Optimizer.h"
#include "train/Checkpoint.h"
#include "train/Metrics.h"

namespace loom::train {

struct TrainSummary {
  int64_t first_step = 0;            // first step run by this process (after a resume: > 0)
  int64_t last_step = 0;             // steps are 1-based: step s is the s-th optimizer update
  std::vector<double> losses;        // per step run by this process
  double first_val_loss = 0.0, last_val_loss = 0.0;  // NaN when never evaluated
  std::string last_checkpoint;
};

models::GPTConfig gpt_config_from(const config::RunConfig& cfg);
Device device_from(const config::RunConfig& cfg);

// Model parameters -> checkpoint tensors "model/<name>"; and back, checking every name and shape
// before copying anything (CheckpointError lists the mismatches).
void add_model_tensors(Checkpoint& ck, const models::GPT& model);
void load_model_tensors(const Checkpoint& ck, models::GPT& model, const std::string& source);

class Trainer {
 public:
  explicit Trainer(const config::RunConfig& cfg);
  ~Trainer();
  TrainSummary run();

  models::GPT& model() { return *model_; }
  // Mean loss over eval.steps batches of the validation set (model in eval mode).
  double evaluate();

 private:
  void build_optimizer();
  // init_from: a Loom checkpoint directory, or "hf:DIR" for a Hugging Face GPT-2 directory.
  void init_weights_from(const std::string& source);
  void resume_from(const std::string& dir);
  std::string save(int64_t step);
  double train_step(int64_t step, double& grad_norm);

  config::RunConfig cfg_;
  Device device_;
  Generator init_gen_;
  std::unique_ptr<models::GPT> model_;
  std::unique_ptr<optim::Optimizer> opt_;
  optim::LrSchedule schedule_;
  std::unique_ptr<data::DataLoader> train_loader_, val_loader_;
  std::unique_ptr<MetricsLogger> metrics_;
  int64_t step_ = 0;  // optimizer updates done so far
  int64_t grad_accum_ = 1;
};

}  // namespace loom::train

// PretrainStage: language-model pretraining as a Stage: windows of seq_len+1 tokens from HDF5
// token datasets (data/DataLoader.h), each DP rank reading its own windows, grad_accum
// micro-batches per optimizer step through the policy's pipeline schedule, the mean cross entropy
// as the loss, and validation loss / perplexity on the whole validation set (every rank the same
// batches). Its checkpoint state is the loader position, stored with the DP size so a run with
// another DP size continues from the same global position.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/DataLoader.h"
#include "train/Stage.h"

namespace loom::train {

class PretrainStage : public Stage {
 public:
  // Opens cfg.data.train_path (and val_path); DataError names a file that does not fit.
  explicit PretrainStage(StageContext& ctx);

  StepResult run_step(int64_t step, double lr, Learner& policy) override;
  Metrics evaluate(Learner& policy, int64_t max_batches) override;
  std::string describe() const override;
  std::string state() const override;
  void set_state(const std::string& trainer_state_json, const std::string& source) override;

 private:
  // The next n batches of `loader` as micro-batches (index = position in the step).
  std::vector<pipeline::MicroBatch> next_micro_batches(data::DataLoader& loader, int64_t n);

  StageContext& ctx_;
  int64_t grad_accum_ = 1;
  std::unique_ptr<data::DataLoader> train_, val_;
};

}  // namespace loom::train

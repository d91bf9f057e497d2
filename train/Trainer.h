// The training loop shared by every stage and every layout: builds this rank's part of the model
// (ProcessGrid TP x PP x DP; one process is 1 x 1 x 1), its Learner (optimizer, gradient sync,
// pipeline schedule, loss scaling), the LR schedule and the stage (pretraining here; SFT, REWARD,
// DPO and PPO through a StageFactory from rlhf/), resumes from a checkpoint when asked, and runs
// stage steps with periodic evaluation, metrics (JSONL, TensorBoard), a progress display and
// layout-free checkpoints (each rank writes the pieces it owns).
//   RunConfig cfg = loom::config::resolve("configs/tiny.pbtxt", {}, /*world=*/1);
//   Trainer t(cfg);                                   // or Trainer(cfg, world, rlhf::make_stage)
//   TrainSummary s = t.run();
// Resuming (checkpoint.resume = "auto") continues bitwise: parameters, optimizer moments, step,
// data position and loss scale come from the checkpoint, and dropout masks are keyed by (seed,
// step, micro-batch, layer), so the same steps draw the same masks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/Config.pb.h"
#include "io/CheckpointReader.h"
#include "models/GPT.h"
#include "optim/LrSchedule.h"
#include "train/Learner.h"
#include "train/Metrics.h"
#include "train/Stage.h"

namespace loom {
class Communicator;
class ProcessGrid;
}  // namespace loom

namespace loom::train {

struct TrainSummary {
  int64_t first_step = 0;            // first step run by this process (after a resume: > 0)
  int64_t last_step = 0;             // steps are 1-based: step s is the s-th optimizer update
  std::vector<double> losses;        // per step run by this process
  double first_val_loss = 0.0, last_val_loss = 0.0;  // NaN when never evaluated
  std::string last_checkpoint;
  std::vector<double> peak_rss_mb;  // every rank's peak resident set size, in global rank order
  std::vector<double> peak_tensor_mb;  // every rank's peak live tensor bytes on its device, in MiB
  int stop_signal = 0;  // the signal that stopped the run early (after its checkpoint), or 0
};

models::GPTConfig gpt_config_from(const config::RunConfig& cfg);
Device device_from(const config::RunConfig& cfg);
// Loads the model a checkpoint `ck` of a run with config `cfg` stands for into `model` (built from
// gpt_config_from(cfg), one process): its "model/" tensors, or for a LoRA run the base from
// cfg.init_from (hf:DIR or a Loom checkpoint) with the checkpoint's adapters on it
// (GPT::add_lora). What `loom eval` and `loom generate` read.
void load_checkpoint_model(models::GPT& model, const config::RunConfig& cfg,
                           const io::CheckpointReader& ck);

class Trainer {
 public:
  // `world`: null for one process; otherwise every rank of the job (cfg resolved for its size).
  // `make_stage` builds stages other than PRETRAIN (rlhf::make_stage); a stage it does not
  // build is a ConfigError.
  explicit Trainer(const config::RunConfig& cfg, std::shared_ptr<Communicator> world = nullptr,
                   StageFactory make_stage = {});
  ~Trainer();
  TrainSummary run();

  // This rank's part of the policy model (the whole model for one process).
  models::GPT& model() { return policy_->model(); }
  Learner& policy() { return *policy_; }
  // Parameters of the whole (logical) model, whatever the layout.
  int64_t num_parameters() const { return num_parameters_; }
  // The stage's first validation metric (val_loss) over eval.steps batches; NaN without a
  // validation split.
  double evaluate();
  // True on the rank that writes metrics, progress and checkpoints (global rank 0).
  bool is_writer() const { return writer_; }

 private:
  void setup_grid(std::shared_ptr<Communicator> world);
  void resume_if_asked();
  void resume_from(const std::string& dir);
  std::string save(int64_t step);  // collective: every rank writes its pieces
  // Collective, after each step: the stop signal any rank received (0: none) and whether
  // checkpoint.time_interval has passed since the last save (rank 0's clock decides).
  std::pair<int, bool> agree_on_stop(int64_t step, double seconds_since_save);
  Metrics evaluate_metrics();
  MetricRecord step_record(int64_t step, const StepResult& r, double tps, double seconds) const;

  config::RunConfig cfg_;
  Device device_;
  std::unique_ptr<ProcessGrid> grid_;
  std::unique_ptr<StageContext> ctx_;
  std::unique_ptr<Learner> policy_;
  std::unique_ptr<Stage> stage_;
  optim::LrSchedule schedule_;
  std::unique_ptr<MetricsLogger> metrics_;
  int64_t step_ = 0;  // optimizer updates done so far
  io::TokenizerFiles tokenizer_;  // the run's tokenizer files, carried by every checkpoint
  std::string hf_config_;  // config.json of the HF model the run started from, or ""
  int64_t num_parameters_ = 0;
  bool writer_ = true;
};

}  // namespace loom::train

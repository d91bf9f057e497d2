// The training loop shared by every stage: builds the model, optimizer, LR schedule and data
// loaders from a resolved RunConfig, resumes from the newest complete checkpoint when asked, and
// runs forward / backward / clip / step with gradient accumulation, periodic evaluation (val loss,
// perplexity), metrics (JSONL, TensorBoard), a progress display and atomic checkpoints.
//   RunConfig cfg = loom::config::resolve("configs/tiny.pbtxt", {}, /*world=*/1);
//   Trainer t(cfg);
//   TrainSummary s = t.run();
// Resuming (checkpoint.resume = "auto") continues bitwise: parameters, optimizer moments, step,
// data-loader position and dropout RNG all come from the checkpoint.
// Data parallel: Trainer(cfg, MpiCommunicator::world()) with cfg resolved for that world size.
// Every rank checks the config hash, loads its DP shard of the data, reduces gradients in buckets
// during backward (parallel/data/GradBucketReducer.h) or shards AdamW (zero_stage 1); rank 0 alone
// writes metrics, progress and checkpoints (which stay layout-free: logical tensors only).
// Stages SFT, REWARD and DPO (cfg.stage) swap the token loader and LM loss for an rlhf::Stage
// (rlhf/Stages.h): JSONL examples and the stage's loss; REWARD trains a models::RewardModel.
// Checkpoints, resume, schedule, DP and metrics are the same for every stage.
// Stage PPO (rlhf/PpoStage.h): one step = one PPO iteration (rollout + epochs of mini-batch
// updates); the trainer owns the actor's and the critic's optimizers, reduces both models'
// gradients over DP ranks, and checkpoints the critic ("critic/..."), its optimizer state
// ("critic_optim/...") and the KL coefficient besides the actor.
#pragma once

#include <map>
#include <nlohmann/json_fwd.hpp>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/DataLoader.h"
#include "config/Config.pb.h"
#include "models/GPT.h"
#include "optim/LrSchedule.h"
#include "optim/Optimizer.h"
#include "io/Checkpoint.h"
#include "train/Metrics.h"

namespace loom {
class Communicator;
class ProcessGrid;
class GradBucketReducer;
class ZeroAdamW;
}  // namespace loom
namespace loom::pipeline {
struct MicroBatch;
}  // namespace loom::pipeline
namespace loom::rlhf {
class Stage;
class PpoStage;
}  // namespace loom::rlhf

namespace loom::optim {
class LossScaler;
}  // namespace loom::optim
namespace loom::train {

class ModelParallel;

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
void add_model_tensors(io::Checkpoint& ck, const models::GPT& model);
void load_model_tensors(const io::Checkpoint& ck, models::GPT& model, const std::string& source);
// A vocabulary table (wte / lm_head, or its optimizer state) saved with another padding, fitted to
// `want` rows: the first real_vocab rows copied, padded rows zero. Other tensors: `t` unchanged.
Tensor fit_vocab_rows(const std::string& name, const Tensor& t, const Shape& want,
                      int64_t real_vocab);

class Trainer {
 public:
  // `world`: null for one process; otherwise every rank of the job. parallel.tp * pp > 1 runs the
  // model through train/ModelParallel.h (stage PRETRAIN).
  explicit Trainer(const config::RunConfig& cfg, std::shared_ptr<Communicator> world = nullptr);
  ~Trainer();
  TrainSummary run();

  // The single-process model (tp = pp = 1 only: a TP x PP rank holds pieces, see parallel_model()).
  models::GPT& model() { return *model_; }
  ModelParallel* parallel_model() { return mp_.get(); }
  // Parameters of the whole (logical) model, whatever the layout.
  int64_t num_parameters() const { return num_parameters_; }
  // Mean loss over eval.steps batches of the validation set (model in eval mode).
  // For SFT / REWARD the stage's validation split (val_loss first); NaN without one.
  double evaluate();
  // True on the rank that writes metrics, progress and checkpoints (global rank 0).
  bool is_writer() const { return writer_; }

 private:
  void setup_parallel(std::shared_ptr<Communicator> world);
  void build_optimizer();
  void build_loss_scaler();  // cfg.loss_scale: dynamic loss scaling of the plain optimizer path
  // SGD or AdamW (cfg.optimizer, decay filter by parameter name) over `params`.
  std::unique_ptr<optim::Optimizer> make_optimizer(
      const std::vector<models::NamedTensor>& params) const;
  void resume_if_asked();
  void optimizer_step(double& grad_norm);
  // init_from: a Loom checkpoint directory, or "hf:DIR" for a Hugging Face GPT-2 directory.
  void init_weights_from(const std::string& source) { load_weights(source, *model_); }
  // Same sources into any GPT of this run's model config. A RewardModel keeps its fresh
  // value_head when the source has none (a pretrained or SFT checkpoint).
  void load_weights(const std::string& source, models::GPT& model) const;
  void build_stage();
  void build_loaders();  // PRETRAIN: token datasets
  void resume_from(const std::string& dir);
  // Parts of resume_from: model + optimizer state; step, data position, RNG and loss-scale state.
  void load_optimizer_states(const io::Checkpoint& ck, const nlohmann::json& state,
                             const std::string& dir);
  void restore_position(const nlohmann::json& state, const std::string& dir);
  std::string save(int64_t step);  // collective; rank 0 writes, every rank gets the path
  std::string write_checkpoint(int64_t step, const std::map<std::string, optim::ParamState>& states);
  double train_step(int64_t step, double& grad_norm);
  // The model this rank trains: the whole GPT, or its TP x PP pieces.
  models::Module& active_model();
  // One metrics.jsonl record of a training step (stage metrics and loss scale included).
  MetricRecord step_record(int64_t step, double loss, double grad_norm, double tps,
                           double seconds) const;
  // The next grad_accum_ training batches (or `n` validation batches) as pipeline micro-batches.
  std::vector<pipeline::MicroBatch> next_micro_batches(data::DataLoader& loader, int64_t n);
  double ppo_train_step(int64_t step, double& grad_norm);
  // After a PPO mini-batch's backward: DP-average, clip and apply the actor and critic grads.
  void ppo_optimizer_step(double& grad_norm);
  // The critic, its optimizer state and the KL coefficient: into / out of a checkpoint.
  std::string add_ppo_state(io::Checkpoint& ck) const;  // returns the meta JSON text
  void load_ppo_state(const io::Checkpoint& ck, const std::string& meta, const std::string& dir);
  // Validation metrics ("val_loss", "val_ppl", stage extras); empty when there is no val split.
  std::vector<std::pair<std::string, double>> evaluate_metrics();
  // Averages stage_metrics_ over micro-batches and DP ranks.
  void reduce_stage_metrics(int64_t micro_batches);

  config::RunConfig cfg_;
  Device device_;
  Generator init_gen_;
  std::unique_ptr<models::GPT> model_;
  std::unique_ptr<optim::Optimizer> opt_;
  optim::LrSchedule schedule_;
  std::unique_ptr<data::DataLoader> train_loader_, val_loader_;  // PRETRAIN
  std::unique_ptr<rlhf::Stage> stage_;                            // SFT, REWARD, DPO, PPO
  rlhf::PpoStage* ppo_ = nullptr;                                 // stage_ when stage PPO
  std::unique_ptr<optim::Optimizer> critic_opt_;                  // PPO critic
  std::vector<std::pair<std::string, double>> stage_metrics_;     // of the last step
  std::unique_ptr<MetricsLogger> metrics_;
  int64_t step_ = 0;  // optimizer updates done so far
  int64_t num_parameters_ = 0;
  int64_t grad_accum_ = 1;
  std::unique_ptr<ProcessGrid> grid_;           // null for one process
  std::unique_ptr<GradBucketReducer> reducer_;  // dp > 1 without ZeRO
  std::unique_ptr<ZeroAdamW> zero_;             // zero_stage 1 (then opt_ is null)
  std::unique_ptr<ModelParallel> mp_;           // tp * pp > 1 (then model_ is null)
  std::unique_ptr<optim::LossScaler> scaler_;   // cfg.loss_scale set
  bool writer_ = true;
};

}  // namespace loom::train

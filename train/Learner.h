// Learner: one trained model as this rank holds it (its pieces under the run's TP x PP x DP
// layout) together with everything that updates it: the optimizer (AdamW, SGD, or ZeRO-1 AdamW),
// the gradient sync (DP averaging overlapped with backward, tied-table sum, global norm and
// clipping), the pipeline schedule with its P2P buffers, and optional loss scaling. There is one
// step path for every stage and layout; one process is the layout 1 x 1 x 1:
//   Learner policy(std::move(model), cfg, grid);
//   double loss = policy.forward_backward(micro_batches, step);  // GPipe / 1F1B (pp 1: in order)
//   double norm = policy.step(lr);                               // sync, clip, update, zero grads
// The trainer owns one Learner for the policy; PPO asks for a second for its critic. Checkpoints
// hold each rank's owned pieces with their ShardSpecs, so they load under any layout.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "config/Config.pb.h"
#include "io/CheckpointReader.h"
#include "models/GPT.h"
#include "optim/LossScaler.h"
#include "optim/Optimizer.h"
#include "parallel/ProcessGroups.h"
#include "parallel/pipeline/P2P.h"
#include "parallel/pipeline/Schedule.h"
#include "train/GradSync.h"

namespace loom::train {

class Learner {
 public:
  // Builds the optimizer from cfg.optimizer over the trainable parameters (a LoRA model's
  // adapters alone; decay filter by parameter name; ZeRO-1 when cfg.parallel.zero_stage is 1),
  // the gradient sync and, with a loss_scale block, the scaler.
  // Collective over the grid. The grid must outlive the learner.
  Learner(std::unique_ptr<models::GPT> model, const config::RunConfig& cfg, ProcessGrid& grid);
  ~Learner();

  models::GPT& model() { return *model_; }
  optim::Optimizer& optimizer() { return *opt_; }
  optim::LossScaler* scaler() { return scaler_.get(); }

  // Forward and backward of this rank's micro-batches of one optimizer step through the pipeline
  // schedule (their index keys dropout; `step` too). Gradients accumulate over the micro-batches
  // (each loss scaled by 1/M). Returns the mean loss over micro-batches and DP ranks, equal on
  // every rank.
  double forward_backward(const std::vector<pipeline::MicroBatch>& micro_batches, int64_t step);
  // The update after forward_backward: gradient sync, loss-scale check (an overflow on any rank
  // skips the step everywhere), clipping at cfg.optimizer.grad_clip, the optimizer step at `lr`,
  // zeroed gradients. Returns the gradient norm before clipping; NaN when the step was skipped.
  double step(double lr);
  // Forward only, no history: the mean over micro-batches of their losses (objectives), equal on
  // every rank. Micro-batches may differ in shape (a short last batch).
  double evaluate(const std::vector<pipeline::MicroBatch>& micro_batches);
  int dp_size() const { return grid_.dp_size(); }
  // Sum (maximum) over ranks of the DP group of `v` (element-wise, in place): stage metrics.
  void dp_sum(std::vector<double>& v) const { dp_reduce(v, ReduceOp::Sum); }
  void dp_max(std::vector<double>& v) const { dp_reduce(v, ReduceOp::Max); }
  // `v` from the last pipeline stage to every stage (in place): what only the last stage knows.
  void from_last_stage(std::vector<double>& v) const;

  // Adds this rank's owned trainable pieces (a LoRA model's adapters alone; on DP rank 0) as
  // "<prefix>/<name>" and the optimizer state as "<optim_prefix>/<buffer>/<name>" (on DP rank 0,
  // or under ZeRO-1 on the DP rank that gathered it) to ck, and the optimizer's step counts to
  // meta (param_steps, optimizer_steps). Collective under ZeRO-1.
  void save(io::Checkpoint& ck, const std::string& prefix, const std::string& optim_prefix,
            nlohmann::json& meta);
  // Reads this rank's trainable pieces (a LoRA model's adapters alone: its frozen base came from
  // init_from) of the logical "<prefix>/<name>" tensors of ck (vocabulary tables
  // of any padding) and, unless weights_only, its pieces of the optimizer state
  // "<optim_prefix>/<buffer>/<name>": nothing else of the checkpoint. CheckpointError lists every
  // missing or misshapen tensor (and every buffer missing for a parameter the saved optimizer
  // updated), and nothing is changed then.
  void load(const io::CheckpointReader& ck, const std::string& prefix,
            const std::string& optim_prefix, const nlohmann::json& meta,
            bool weights_only = false);

 private:
  void dp_reduce(std::vector<double>& v, ReduceOp op) const;
  // This rank's pieces of the saved optimizer state, or lines added to `problems`.
  std::map<std::string, optim::ParamState> read_states(const io::CheckpointReader& ck,
                                                       const std::string& optim_prefix,
                                                       const nlohmann::json& meta,
                                                       std::string& problems) const;

  const config::RunConfig& cfg_;
  ProcessGrid& grid_;
  std::unique_ptr<models::GPT> model_;
  std::unique_ptr<optim::Optimizer> opt_;
  std::unique_ptr<GradSync> sync_;
  std::unique_ptr<optim::LossScaler> scaler_;
  pipeline::ScheduleKind schedule_;
};

// Forward only through the pipeline, no history: the mean over micro-batches of their losses
// (objectives; an objective may also capture what it needs from the final hidden states), equal
// on every rank. Micro-batches may differ in shape. Collective over the grid's pipeline group.
double forward_only(models::GPT& model, ProcessGrid& grid,
                    const std::vector<pipeline::MicroBatch>& micro_batches);

// Reads every parameter piece of `model` (p.meta.spec) from the tensors "<prefix><name>" of `src`
// (a checkpoint with prefix "model/", or a Hugging Face directory with prefix ""): each rank reads
// only its pieces. Vocabulary tables may carry another padding. CheckpointError naming
// src.where() lists every missing name and bad shape, and nothing is copied then. A name in
// `optional` that is missing keeps its current value (a fresh reward head on an LM checkpoint).
void load_pieces(nn::Module& model, const io::TensorSource& src, const std::string& prefix,
                 const std::vector<std::string>& optional = {});

}  // namespace loom::train

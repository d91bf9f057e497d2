// ModelParallel: the Trainer's tensor + pipeline parallel path (parallel.tp * parallel.pp > 1).
// This rank holds a pipeline::ParallelGpt (its stage's layers, its TP slices); one optimizer step
// runs the global batch's micro-batches through the pipeline schedule (GPipe or 1F1B), averages
// gradients over the DP group in buckets started during the last micro-batch's backward (a
// GradBucketReducer; under ZeRO-1 the optimizer's reduce-scatter does it instead), keeps the tied embedding's two copies in sync, computes the global
// gradient norm once over the replica's TP x PP ranks (each logical element counted once) and
// clips every piece with the single-process rule. Checkpoints are layout-free: each rank adds only
// the pieces it owns (DP rank 0) of every parameter and optimizer buffer, with their ShardSpecs,
// and loading slices the logical tensors for whatever layout is running.
//   ModelParallel mp(cfg, grid, full_gpt);   // full_gpt: the initialised single-process model
//   double loss = mp.forward_backward(micro_batches, step);  // forward + backward + reduce
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/Config.pb.h"
#include "models/GPT.h"
#include "optim/Optimizer.h"
#include "parallel/ProcessGroups.h"
#include "optim/ZeroAdamW.h"
#include "parallel/model/ParallelGpt.h"
#include "parallel/pipeline/P2P.h"
#include "parallel/pipeline/Schedule.h"
#include "parallel/pipeline/TiedGradSync.h"
#include "io/Checkpoint.h"

namespace loom {
class GradBucketReducer;
}  // namespace loom

namespace loom::train {

class ModelParallel {
 public:
  // Collective over the grid. Throws ConfigError for what this path does not run (stages other
  // than PRETRAIN, ZeRO, dropout with pp > 1).
  ModelParallel(const config::RunConfig& cfg, ProcessGrid& grid, const models::GPT& full);
  ~ModelParallel();

  pipeline::ParallelGpt& model() { return *model_; }

  // Forward + backward of one global step's micro-batches (this DP rank's share), tied-weight
  // sync and DP averaging. Returns the step loss (mean over micro-batches and DP ranks), equal on
  // every rank. Gradients are left in the pieces' .grad.
  // `step` (1-based) and each micro-batch's index key its dropout masks.
  double forward_backward(const std::vector<pipeline::MicroBatch>& micro_batches, int64_t step);
  // Global gradient norm of the logical model (before clipping); clips every piece when clip > 0.
  double clip_gradients(double clip);
  // For ZeroAdamW over this rank's pieces: the norm counts owned pieces and sums over the
  // replica's TP x PP ranks (so ZeRO-1's clipping equals clip_gradients').
  ZeroNormOptions zero_norm_options() const;
  // Mean loss over `batches` (forward only); equal on every rank.
  double evaluate(const std::vector<pipeline::MicroBatch>& batches);

  // Adds this rank's owned pieces ("model/<name>", "optim/<buf>/<name>") to ck.pieces.
  void add_pieces(io::Checkpoint& ck, const std::map<std::string, optim::ParamState>& states) const;
  // Copies this rank's slices of the logical "model/..." tensors of `ck` into the model and returns
  // this rank's slices of the "optim/<buf>/<name>" tensors (steps left 0 for the caller to set).
  std::map<std::string, optim::ParamState> load(const io::Checkpoint& ck, const std::string& dir);

 private:
  // A logical tensor of `ck` fitted to this layout's logical shape (vocab tables may differ in
  // padded rows).
  Tensor fit_logical(const std::string& name, const Tensor& t, const ShardSpec& spec) const;

  const config::RunConfig& cfg_;
  ProcessGrid& grid_;
  pipeline::ScheduleKind schedule_;
  std::unique_ptr<pipeline::ParallelGpt> model_;
  std::unique_ptr<pipeline::TiedGradSync> tied_;
  std::unique_ptr<GradBucketReducer> reducer_;  // dp > 1: DP averaging overlapped with backward
  std::map<Shape, std::unique_ptr<pipeline::PipelineP2P>> p2p_;  // one per micro-batch shape
  pipeline::PipelineP2P& p2p_for(const Shape& ids_shape);
};

}  // namespace loom::train

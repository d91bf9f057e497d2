// GradSync: everything that happens to one model's gradients between backward and the optimizer
// step, for any layout. Data parallel: gradients are averaged over the DP group in buckets that
// start during the last micro-batch's backward (parallel/data/GradBucketReducer.h), so the
// communication overlaps it. Pipeline parallel with tied embeddings: the first and the last stage
// add up their parts of the table's gradient. Then the global gradient norm of the logical model
// (each logical element counted once, over the replica's TP x PP ranks: the parameters' owner
// flags) and clipping of every piece with torch's rule. One process is the case of groups of
// size 1: nothing is communicated.
//   GradSync sync(model, model.tied_weight(), cfg.tie_embeddings, grid);
//   hooks.before_backward = [&](int64_t m) { sync.before_backward(m, M); };
//   run_pipeline(...);  sync.finish();  double norm = sync.clip(1.0);  opt.step();
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/nn/Module.h"
#include "parallel/ProcessGroups.h"

namespace loom {
class GradBucketReducer;
}
namespace loom::pipeline {
class TiedGradSync;
}

namespace loom::train {

class GradSync {
 public:
  // `tied`: the model's tied table on this rank (first / last stage), undefined otherwise;
  // `tied_embeddings` whether the model ties them (the same on every rank). The grid and the
  // model must outlive this object. Collective over the grid's groups.
  GradSync(const nn::Module& model, const Tensor& tied, bool tied_embeddings, ProcessGrid& grid);
  ~GradSync();

  // Before micro-batch m's backward (of M this step): only the last one's gradients are reduced.
  void before_backward(int64_t m, int64_t M);
  // Waits for the DP averages (a parameter without a gradient this step gets zeros) and sums the
  // tied table's two parts. Every DP replica then holds the same gradients.
  void finish();
  // The global gradient norm (before clipping), equal on every rank; scales every piece's
  // gradient by max_norm / (norm + 1e-6) when that is below 1 (max_norm <= 0: no clipping).
  double clip(double max_norm);

 private:
  std::vector<Tensor> params_, owned_;
  Tensor tied_;
  ProcessGrid& grid_;
  std::unique_ptr<GradBucketReducer> reducer_;         // dp > 1
  std::unique_ptr<pipeline::TiedGradSync> tied_sync_;  // pp > 1 with a tied table
};

}  // namespace loom::train

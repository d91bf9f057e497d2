// GradSync (see GradSync.h).
#include "train/GradSync.h"

#include <cmath>

#include "core/util/Check.h"
#include "optim/ClipGradNorm.h"
#include "parallel/data/GradBucketReducer.h"
#include "parallel/pipeline/TiedGradSync.h"

namespace loom::train {

GradSync::GradSync(const nn::Module& model, const Tensor& tied, bool tied_embeddings,
                   ProcessGrid& grid)
    : tied_(tied), grid_(grid) {
  for (const nn::Parameter& p : model.trainable_parameter_list()) {  // not LoRA's frozen base
    params_.push_back(p.tensor);
    if (p.meta.owner) owned_.push_back(p.tensor);
  }
  // Every DP rank of this (tp, pp) position holds the same pieces in the same order, so the
  // reducer's buckets and their collective sequence match across the DP group.
  if (grid.dp_size() > 1) reducer_ = std::make_unique<GradBucketReducer>(params_, grid.dp_group());
  // Collective over the pipeline group on every rank (also those without a table).
  if (grid.pp_size() > 1 && tied_embeddings) tied_sync_ = std::make_unique<pipeline::TiedGradSync>(grid.pp_group());
}

GradSync::~GradSync() = default;

void GradSync::before_backward(int64_t m, int64_t M) {
  if (reducer_) reducer_->set_sync(m == M - 1);
}

void GradSync::finish() {
  // Grads become DP averages first; the tied sum of the two copies' averages is the DP average of
  // their sums.
  if (reducer_) reducer_->finish();
  if (tied_sync_ && tied_.defined() && tied_sync_->holds_weight()) tied_sync_->all_reduce(tied_);
}

double GradSync::clip(double max_norm) {
  double sq = optim::grad_sq_sum(owned_);
  if (grid_.mp_group().size() > 1) {
    Tensor t = Tensor::full({1}, sq, DType::F64);
    grid_.mp_group().all_reduce(t);
    sq = t.item();
  }
  const double norm = std::sqrt(sq);
  if (max_norm > 0.0) {
    const double coef = optim::clip_coefficient(norm, max_norm);
    if (coef < 1.0) optim::scale_grads(params_, coef);
  }
  return norm;
}

}  // namespace loom::train

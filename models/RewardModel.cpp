// RewardModel (see RewardModel.h).
#include "models/RewardModel.h"

#include <cmath>

#include "core/ops/Indexing.h"
#include "core/util/Check.h"

namespace loom::models {

RewardModel::RewardModel(const GPTConfig& config, Layout layout, DType dtype, Device device)
    : GPT(config, layout, dtype, device) {
  if (!is_last()) return;
  // Small enough that initial scores are O(1) for unit-variance LayerNorm outputs.
  value_head_ = std::make_unique<Linear>(config.n_embd, 1, true, tp().rank() == 0,
                                         1.0 / std::sqrt(double(config.n_embd) + 1.0), dtype,
                                         device);
  register_module("value_head", *value_head_);
}

Tensor RewardModel::values_of(const Tensor& h) const {
  LOOM_CHECK(value_head_, "RewardModel: the value head lives on the last pipeline stage");
  Tensor v = value_head_->forward(h);          // (B,T,1)
  return v.reshape({h.size(0), h.size(1)});  // (B,T)
}

Tensor RewardModel::values(const Tensor& ids) { return values_of(hidden_states(ids)); }

Tensor select_last(const Tensor& values, const Tensor& last) {
  LOOM_CHECK(last.dim() == 1 && last.dtype() == DType::I64 && values.dim() == 2 &&
                 last.size(0) == values.size(0),
             "RewardModel.score: expected last of shape (", values.size(0), ") and dtype i64, got ",
             last.shape(), " ", dtype_name(last.dtype()));
  return gather(values, 1, last.reshape({last.size(0), 1})).reshape({last.size(0)});  // (B)
}

Tensor RewardModel::score(const Tensor& ids, const Tensor& last) {
  return select_last(values(ids), last);
}

}  // namespace loom::models

// RewardModel (see RewardModel.h).
#include "models/RewardModel.h"

#include <cmath>

#include "core/ops/Indexing.h"
#include "core/util/Check.h"

namespace loom::models {

RewardModel::RewardModel(const GPTConfig& config, Generator& init_gen, DType dtype, Device device)
    : GPT(config, init_gen, dtype, device), value_head_(config.n_embd, 1, true, dtype, device) {
  register_module("value_head", value_head_);
  // Small enough that initial scores are O(1) for unit-variance LayerNorm outputs.
  value_head_.init(init_gen, 1.0 / std::sqrt(double(config.n_embd) + 1.0));
}

Tensor RewardModel::values(const Tensor& ids) {
  Tensor h = hidden_states(ids);                // (B,T,C)
  Tensor v = value_head_.forward(h);            // (B,T,1)
  return v.reshape({ids.size(0), ids.size(1)});  // (B,T)
}

Tensor RewardModel::score(const Tensor& ids, const Tensor& last) {
  LOOM_CHECK(last.dim() == 1 && last.dtype() == DType::I64 && last.size(0) == ids.size(0),
             "RewardModel.score: expected last of shape (", ids.size(0), ") and dtype i64, got ",
             last.shape(), " ", dtype_name(last.dtype()));
  Tensor v = values(ids);  // (B,T)
  return gather(v, 1, last.reshape({last.size(0), 1})).reshape({last.size(0)});  // (B)
}

}  // namespace loom::models

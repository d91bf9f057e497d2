// Column- and row-parallel linear layers (ParallelLinear.h): parameter sharding and forward
// composed of copy_to_tp / gather_from_tp / scatter_to_tp / reduce_from_tp and the core linear
// op, so their backward comes from those functions' backward rules.
#include "parallel/tensor/ParallelLinear.h"

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/util/Check.h"
#include "parallel/tensor/Mappings.h"

namespace loom::tp {

namespace {

int64_t checked_shard(const char* layer, const char* what, int64_t n, int size) {
  LOOM_CHECK(n >= 1 && n % size == 0, layer, ": expected ", what, " divisible by the TP size ",
             size, ", got ", n);
  return n / size;
}

Tensor trainable_zeros(const Shape& shape, DType dtype, Device device) {
  return Tensor::zeros(shape, dtype, device).set_requires_grad(true);
}

void copy_param(const char* layer, const Tensor& param, const Tensor& value) {
  LOOM_CHECK(value.shape() == param.shape(), layer, ".load_full: expected a shard of shape ",
             param.shape(), ", got ", value.shape());
  autograd::NoGradGuard guard;
  param.detach().copy_(value);
}

}  // namespace

Tensor shard_rows(const Tensor& full, int rank, int size, int64_t stacked) {
  LOOM_CHECK(full.dim() >= 1, "shard_rows: expected at least one dim, got ", full.shape());
  LOOM_CHECK(stacked >= 1 && full.size(0) % (stacked * size) == 0, "shard_rows: expected ",
             full.size(0), " rows divisible by stacked*tp = ", stacked, "*", size);
  const int64_t block = full.size(0) / stacked;
  std::vector<Tensor> parts;
  for (int64_t s = 0; s < stacked; ++s)
    parts.push_back(slice_for_rank(full.detach().narrow(0, s * block, block), 0, rank, size));
  return stacked == 1 ? parts[0] : cat(parts, 0);
}

ColumnParallelLinear::ColumnParallelLinear(int64_t in, int64_t out, Communicator& tp, bool bias,
                                           bool gather_output, DType dtype, Device device)
    : tp_(tp), gather_output_(gather_output) {
  const int64_t local = checked_shard("ColumnParallelLinear", "out_features", out, tp.size());
  LOOM_CHECK(in >= 1, "ColumnParallelLinear: expected in_features >= 1, got ", in);
  weight_ = trainable_zeros({local, in}, dtype, device);
  if (bias) bias_ = trainable_zeros({local}, dtype, device);
}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == weight_.size(1),
             "ColumnParallelLinear: expected input (..., ", weight_.size(1), "), got ", x.shape());
  Tensor y = linear(copy_to_tp(x, tp_), weight_, bias_);  // (..., out/tp)
  return gather_output_ ? gather_from_tp(y, tp_) : y;
}

void ColumnParallelLinear::load_full(const Tensor& weight, const Tensor& bias, int64_t stacked) {
  copy_param("ColumnParallelLinear", weight_, shard_rows(weight, tp_.rank(), tp_.size(), stacked));
  LOOM_CHECK(bias.defined() == bias_.defined(), "ColumnParallelLinear.load_full: expected ",
             bias_.defined() ? "a bias" : "no bias");
  if (bias_.defined())
    copy_param("ColumnParallelLinear", bias_, shard_rows(bias, tp_.rank(), tp_.size(), stacked));
}

std::vector<Tensor> ColumnParallelLinear::parameters() const {
  return bias_.defined() ? std::vector<Tensor>{weight_, bias_} : std::vector<Tensor>{weight_};
}

RowParallelLinear::RowParallelLinear(int64_t in, int64_t out, Communicator& tp, bool bias,
                                     bool input_is_parallel, DType dtype, Device device)
    : tp_(tp), input_is_parallel_(input_is_parallel) {
  const int64_t local = checked_shard("RowParallelLinear", "in_features", in, tp.size());
  LOOM_CHECK(out >= 1, "RowParallelLinear: expected out_features >= 1, got ", out);
  weight_ = trainable_zeros({out, local}, dtype, device);
  if (bias) bias_ = trainable_zeros({out}, dtype, device);
}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  const int64_t local = weight_.size(1);
  const int64_t want = input_is_parallel_ ? local : local * tp_.size();
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == want, "RowParallelLinear: expected input (..., ", want,
             "), got ", x.shape());
  Tensor xl = input_is_parallel_ ? x : scatter_to_tp(x, tp_);  // (..., in/tp)
  Tensor y = reduce_from_tp(linear(xl, weight_), tp_);         // (..., out)
  return bias_.defined() ? y + bias_ : y;
}

void RowParallelLinear::load_full(const Tensor& weight, const Tensor& bias) {
  LOOM_CHECK(weight.dim() == 2, "RowParallelLinear.load_full: expected a (out, in) weight, got ",
             weight.shape());
  copy_param("RowParallelLinear", weight_, slice_for_rank(weight, 1, tp_.rank(), tp_.size()));
  LOOM_CHECK(bias.defined() == bias_.defined(), "RowParallelLinear.load_full: expected ",
             bias_.defined() ? "a bias" : "no bias");
  if (bias_.defined()) copy_param("RowParallelLinear", bias_, bias);
}

std::vector<Tensor> RowParallelLinear::parameters() const {
  return bias_.defined() ? std::vector<Tensor>{weight_, bias_} : std::vector<Tensor>{weight_};
}

std::vector<Tensor> RowParallelLinear::replicated_parameters() const {
  return bias_.defined() ? std::vector<Tensor>{bias_} : std::vector<Tensor>{};
}

}  // namespace loom::tp

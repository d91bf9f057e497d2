// Column- and row-parallel linear layers (ParallelLinear.h): the pieces of the logical weights and
// a forward composed of copy_to_tp / gather_from_tp / scatter_to_tp / reduce_from_tp and the core
// linear op, so their backward comes from those functions' backward rules.
#include "parallel/tensor/ParallelLinear.h"

#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/util/Check.h"
#include "parallel/tensor/Mappings.h"

namespace loom::tp {

ColumnParallelLinear::ColumnParallelLinear(int64_t in, int64_t out, Communicator& tp,
                                           LinearOptions o, int64_t stacked, bool gather_output)
    : tp_(tp), gather_output_(gather_output) {
  LOOM_CHECK(in >= 1 && stacked >= 1 && out >= 1 && out % (stacked * tp.size()) == 0,
             "ColumnParallelLinear: expected out_features ", out, " divisible by ", stacked,
             " blocks x the TP size ", tp.size(), " and in_features >= 1, got in ", in);
  const int r = tp.rank(), n = tp.size();
  nn::ParamMeta w{ShardSpec::rows({out, in}, stacked, r, n), true, nn::Init::Normal, o.init_std};
  weight_ = register_parameter("weight", Tensor::zeros(w.spec.local_shape(), o.dtype, o.device), w);
  if (o.bias) {
    nn::ParamMeta b{ShardSpec::rows({out}, stacked, r, n), true, nn::Init::Zeros};
    bias_ = register_parameter("bias", Tensor::zeros(b.spec.local_shape(), o.dtype, o.device), b);
  }
}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == weight_.size(1),
             "ColumnParallelLinear: expected input (..., ", weight_.size(1), "), got ", x.shape());
  Tensor y = linear(copy_to_tp(x, tp_), weight_, bias_);  // (..., out/tp)
  return gather_output_ ? gather_from_tp(y, tp_) : y;
}

RowParallelLinear::RowParallelLinear(int64_t in, int64_t out, Communicator& tp, LinearOptions o,
                                     bool input_is_parallel)
    : tp_(tp), input_is_parallel_(input_is_parallel) {
  LOOM_CHECK(out >= 1 && in >= 1 && in % tp.size() == 0, "RowParallelLinear: expected ",
             "in_features ", in, " divisible by the TP size ", tp.size(), " and out_features >= 1, ",
             "got out ", out);
  nn::ParamMeta w{ShardSpec::split({out, in}, 1, tp.rank(), tp.size()), true, nn::Init::Normal,
                  o.init_std};
  weight_ = register_parameter("weight", Tensor::zeros(w.spec.local_shape(), o.dtype, o.device), w);
  if (o.bias) {
    nn::ParamMeta b{ShardSpec::whole({out}), tp.rank() == 0, nn::Init::Zeros};
    bias_ = register_parameter("bias", Tensor::zeros({out}, o.dtype, o.device), b);
  }
}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  const int64_t local = weight_.size(1);
  const int64_t want = input_is_parallel_ ? local : local * tp_.size();
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == want, "RowParallelLinear: expected input (..., ", want,
             "), got ", x.shape());
  Tensor xl = input_is_parallel_ ? x : scatter_to_tp(x, tp_);  // (..., in/tp)
  if (tp_.size() == 1) return linear(xl, weight_, bias_);      // the bias fused into the GEMM
  Tensor y = reduce_from_tp(linear(xl, weight_), tp_);         // (..., out)
  return bias_.defined() ? y + bias_ : y;
}

Tensor RowParallelLinear::forward_gelu(const Tensor& a) const {
  LOOM_CHECK(input_is_parallel_ && a.dim() >= 2 && a.size(-1) == weight_.size(1),
             "RowParallelLinear.forward_gelu: expected a parallel input (..., ", weight_.size(1),
             "), got ", a.shape());
  if (tp_.size() == 1) return gelu_linear(a, weight_, bias_);
  Tensor y = reduce_from_tp(gelu_linear(a, weight_), tp_);  // (..., out)
  return bias_.defined() ? y + bias_ : y;
}

Tensor RowParallelLinear::forward_swiglu(const Tensor& a) const {
  LOOM_CHECK(input_is_parallel_ && a.dim() >= 2 && a.size(-1) == 2 * weight_.size(1),
             "RowParallelLinear.forward_swiglu: expected a parallel input (..., ",
             2 * weight_.size(1), ") of [gate | up], got ", a.shape());
  if (tp_.size() == 1) return swiglu_linear(a, weight_, bias_);
  Tensor y = reduce_from_tp(swiglu_linear(a, weight_), tp_);  // (..., out)
  return bias_.defined() ? y + bias_ : y;
}

}  // namespace loom::tp

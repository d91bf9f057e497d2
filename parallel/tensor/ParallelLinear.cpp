// Column- and row-parallel linear layers (ParallelLinear.h): the pieces of the logical weights and
// a forward composed of copy_to_tp / gather_from_tp / scatter_to_tp / reduce_from_tp and the core
// linear op, so their backward comes from those functions' backward rules.
#include "parallel/tensor/ParallelLinear.h"

#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"
#include "parallel/tensor/Mappings.h"

namespace loom::tp {

ColumnParallelLinear::ColumnParallelLinear(int64_t in, int64_t out, Communicator& tp,
                                           LinearOptions o, int64_t stacked, bool gather_output)
    : tp_(tp), gather_output_(gather_output), stacked_(stacked) {
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

Tensor ColumnParallelLinear::forward(const Tensor& x, Generator* gen) const {
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == weight_.size(1),
             "ColumnParallelLinear: expected input (..., ", weight_.size(1), "), got ", x.shape());
  Tensor y = linear(copy_to_tp(x, tp_), weight_, bias_);  // (..., out/tp)
  if (lora_A_.defined())
    y = y + lora_column(x, lora_A_, lora_B_, lora_, lora_dropout_gen(lora_, gen, is_training()),
                        tp_);
  return gather_output_ ? gather_from_tp(y, tp_) : y;
}

void ColumnParallelLinear::add_lora(const LoraOptions& o) {
  check_lora_options(o);
  LOOM_CHECK(!lora_A_.defined(), "ColumnParallelLinear: expected no adapter yet, got one");
  lora_ = o;
  const int64_t in = weight_.size(1), out = weight_.size(0) * tp_.size();
  const DType dt = weight_.dtype();
  const Device dev = weight_.device();
  nn::ParamMeta a{ShardSpec::whole({o.rank, in}), tp_.rank() == 0, nn::Init::Normal, o.init_std};
  lora_A_ = register_parameter("lora_A", Tensor::zeros({o.rank, in}, dt, dev), a);
  nn::ParamMeta b{ShardSpec::rows({out, o.rank}, stacked_, tp_.rank(), tp_.size()), true,
                  nn::Init::Zeros};
  lora_B_ = register_parameter("lora_B", Tensor::zeros(b.spec.local_shape(), dt, dev), b);
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

void RowParallelLinear::add_lora(const LoraOptions& o) {
  check_lora_options(o);
  LOOM_CHECK(!lora_A_.defined(), "RowParallelLinear: expected no adapter yet, got one");
  lora_ = o;
  const int64_t out = weight_.size(0), in = weight_.size(1) * tp_.size();
  const DType dt = weight_.dtype();
  const Device dev = weight_.device();
  nn::ParamMeta a{ShardSpec::split({o.rank, in}, 1, tp_.rank(), tp_.size()), true,
                  nn::Init::Normal, o.init_std};
  lora_A_ = register_parameter("lora_A", Tensor::zeros(a.spec.local_shape(), dt, dev), a);
  nn::ParamMeta b{ShardSpec::whole({out, o.rank}), tp_.rank() == 0, nn::Init::Zeros};
  lora_B_ = register_parameter("lora_B", Tensor::zeros({out, o.rank}, dt, dev), b);
}

Tensor RowParallelLinear::plus_lora(const Tensor& y, const Tensor& xl, Generator* gen) const {
  if (!lora_A_.defined()) return y;
  return y + lora_row(xl, lora_A_, lora_B_, lora_, lora_dropout_gen(lora_, gen, is_training()),
                      tp_);
}

Tensor RowParallelLinear::forward(const Tensor& x, Generator* gen) const {
  const int64_t local = weight_.size(1);
  const int64_t want = input_is_parallel_ ? local : local * tp_.size();
  LOOM_CHECK(x.dim() >= 1 && x.size(-1) == want, "RowParallelLinear: expected input (..., ", want,
             "), got ", x.shape());
  Tensor xl = input_is_parallel_ ? x : scatter_to_tp(x, tp_);  // (..., in/tp)
  if (tp_.size() == 1) return plus_lora(linear(xl, weight_, bias_), xl, gen);  // fused bias
  Tensor y = reduce_from_tp(linear(xl, weight_), tp_);         // (..., out)
  return plus_lora(bias_.defined() ? y + bias_ : y, xl, gen);
}

Tensor RowParallelLinear::forward_gelu(const Tensor& a, Generator* gen) const {
  LOOM_CHECK(input_is_parallel_ && a.dim() >= 2 && a.size(-1) == weight_.size(1),
             "RowParallelLinear.forward_gelu: expected a parallel input (..., ", weight_.size(1),
             "), got ", a.shape());
  Tensor y = tp_.size() == 1 ? gelu_linear(a, weight_, bias_)
                             : reduce_from_tp(gelu_linear(a, weight_), tp_);  // (..., out)
  if (tp_.size() > 1 && bias_.defined()) y = y + bias_;
  return lora_A_.defined() ? plus_lora(y, gelu(a), gen) : y;
}

Tensor RowParallelLinear::forward_swiglu(const Tensor& a, Generator* gen) const {
  LOOM_CHECK(input_is_parallel_ && a.dim() >= 2 && a.size(-1) == 2 * weight_.size(1),
             "RowParallelLinear.forward_swiglu: expected a parallel input (..., ",
             2 * weight_.size(1), ") of [gate | up], got ", a.shape());
  Tensor y = tp_.size() == 1 ? swiglu_linear(a, weight_, bias_)
                             : reduce_from_tp(swiglu_linear(a, weight_), tp_);  // (..., out)
  if (tp_.size() > 1 && bias_.defined()) y = y + bias_;
  return lora_A_.defined() ? plus_lora(y, swiglu(a), gen) : y;
}

}  // namespace loom::tp

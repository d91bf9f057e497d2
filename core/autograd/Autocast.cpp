// Autocast state and casting rules (see Autocast.h). Policy under AutocastGuard(BF16), CUDA only:
//   linear, matmul, bmm, scaled_dot_product_attention: floating inputs -> bf16, output bf16
//     (GEMMs accumulate in f32 in cuBLASLt; attention keeps f32 scores and log-sum-exp);
//   layer_norm: x, weight, bias -> bf16, output bf16; statistics (mean, rstd) and arithmetic f32;
//   embedding: output cast to bf16, so the residual stream is bf16 (as in llm.c; Loom's
//     elementwise ops do not promote mixed dtypes, so the stream must have one dtype);
//   cross_entropy: bf16 logits read as they are, f32 arithmetic, f32 loss (bf16 dlogits);
//   softmax, log_softmax: bf16 inputs -> f32, output f32;
//   everything else (gelu, add, dropout, ...) runs in its input's dtype.
// CPU tensors are left alone (CPU kernels are f32/f64 only), so autocast is a no-op on CPU.
#include "core/autograd/Autocast.h"

#include "core/ops/View.h"
#include "core/util/Check.h"

namespace loom::autograd {

namespace {
thread_local DType t_autocast_dtype = DType::F32;

bool castable(const Tensor& x) {
  return x.defined() && is_floating(x.dtype()) && x.device().is_cuda();
}
}  // namespace

DType Autocast::dtype() { return t_autocast_dtype; }

void Autocast::set_dtype(DType dtype) {
  LOOM_CHECK(dtype == DType::BF16 || dtype == DType::F32,
             "autocast: expected dtype bf16 (on) or f32 (off), got ", dtype_name(dtype));
  t_autocast_dtype = dtype;
}

Tensor autocast_lower(const Tensor& x) {
  const DType dt = t_autocast_dtype;
  if (dt == DType::F32 || !castable(x) || x.dtype() == dt || x.dtype() == DType::F64) return x;
  return to_dtype(x, dt);
}

Tensor autocast_f32(const Tensor& x) {
  if (t_autocast_dtype == DType::F32 || !castable(x)) return x;
  if (x.dtype() != DType::BF16 && x.dtype() != DType::F16) return x;
  return to_dtype(x, DType::F32);
}

}  // namespace loom::autograd

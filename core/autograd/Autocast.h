// bf16 autocast (like torch.autocast(device_type="cuda", dtype=torch.bfloat16)): a thread-local
// AutocastGuard under which CUDA linear/matmul/attention/layer_norm cast floating inputs to bf16
// and return bf16 (f32 accumulation inside), while softmax and cross_entropy compute and return
// f32. Parameters stay f32: the cast is the differentiable to_dtype, so their gradients arrive in
// f32. The policy per op is in Autocast.cpp; CPU tensors are never cast (a no-op on CPU).
#pragma once

#include "core/tensor/Tensor.h"

namespace loom::autograd {

class Autocast {
 public:
  // The autocast dtype of this thread, or F32 when autocast is off.
  static DType dtype();
  static bool is_enabled() { return dtype() != DType::F32; }
  static void set_dtype(DType dtype);  // F32 turns it off; BF16 turns it on; others throw
};

// Autocast for a scope. Only DType::BF16 (on) and DType::F32 (off, e.g. to run one region of an
// autocast scope in full precision) are accepted; anything else is a ValueError.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype) : prev_(Autocast::dtype()) { Autocast::set_dtype(dtype); }
  ~AutocastGuard() { Autocast::set_dtype(prev_); }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

// Casting rules used by the ops (each returns x itself when no cast applies, i.e. autocast off,
// x undefined, not floating, or not on a CUDA device):
// - lower precision ops (linear, matmul, attention, layer_norm): to the autocast dtype;
Tensor autocast_lower(const Tensor& x);
// - f32 ops (softmax, log_softmax): bf16/f16 inputs up to f32.
Tensor autocast_f32(const Tensor& x);

}  // namespace loom::autograd

namespace loom {
using autograd::AutocastGuard;
}

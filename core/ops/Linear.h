// Matrix products on OpenBLAS (CPU) or cuBLASLt (CUDA). Transposed views are passed to the GEMM
// as transposes, never copied.
//   Tensor y = loom::linear(x, w, b);   // x (..., in), w (out, in), b (out) -> (..., out)
#pragma once

#include "core/tensor/Tensor.h"

namespace loom {

// a (M,K) @ b (K,N); a (B,M,K) @ b (B,K,N) or b (K,N); leading batch dims broadcast as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);  // exactly (B,M,K) @ (B,K,N)
// y = x @ w^T + b; bias may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// out += a (M,K) @ b (K,N) in place, out (M,N) contiguous; a and b may be transposed views (passed
// to the GEMM as transposes). No autograd: a kernel call for fused ops' own gradients.
void addmm_(const Tensor& out, const Tensor& a, const Tensor& b);
// linear(gelu(a), weight, bias), keeping only a for backward: gelu(a) is recomputed there instead
// of being stored (selective activation recomputation of an MLP's activation). Same values and
// gradients as the composition.
Tensor gelu_linear(const Tensor& a, const Tensor& weight, const Tensor& bias = Tensor());
// linear(swiglu(a), weight, bias) keeping only a (..., M, 2F) for backward: swiglu(a) is
// recomputed there (the same selective recomputation for a SwiGLU MLP).
Tensor swiglu_linear(const Tensor& a, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace loom

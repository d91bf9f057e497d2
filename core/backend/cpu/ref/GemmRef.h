// Reference GEMM: the plain triple loop that is the spec and test oracle of CpuBackend::gemm
// (OpenBLAS) and of the CUDA GEMM. Same contract as Backend::gemm:
//   c = alpha * op(a) @ op(b) + beta * c, batched over dim 0 when c is 3-D,
// where a/b may be 2-D (shared by every batch) or 3-D with a batch stride of 0 (broadcast).
// Any strides are accepted here (the fast kernel is stricter); accumulation is in double.
#pragma once

#include "core/tensor/Tensor.h"

namespace loom::cpu::ref {

// c (M,N) or (Bt,M,N); a (M,K) or (K,M) if trans_a, optionally with a leading batch dim; likewise b.
void gemm_ref(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
              double alpha, double beta);

}  // namespace loom::cpu::ref

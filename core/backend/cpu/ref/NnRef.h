// Plain reference versions of the neural-network, indexing and optimizer kernels (Backend.h).
// They are the spec and the test oracle for the fast CPU kernels (CpuNn.cpp, CpuIndexing.cpp,
// CpuOptim.cpp) and for the CUDA ones: one scalar loop per formula, accumulation in double,
// no threads, no vector intrinsics. Same arguments and contracts as the Backend methods
// (contiguous tensors, f32 or f64 for the float kernels, I64 indices).
//   ref::softmax_forward(y_ref, x, /*log=*/false);
//   EXPECT_TRUE(allclose(y_fast, y_ref, 1e-6, 1e-5));
#pragma once

#include <cstdint>

#include "core/tensor/Tensor.h"

namespace loom::cpu::ref {

// x, y (rows, cols): softmax (or log_softmax) over the last dim.
void softmax_forward(const Tensor& y, const Tensor& x, bool log);
void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log);
// x, y (N,C); weight, bias (C) (bias may be undefined); mean, rstd (N).
void layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                       const Tensor& weight, const Tensor& bias, double eps);
void layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                        const Tensor& dy, const Tensor& x, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd);
// logits (N,V), targets (N) I64 -> loss (N), lse (N).
void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                           const Tensor& targets, int64_t ignore_index);
void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                            const Tensor& targets, const Tensor& lse, int64_t ignore_index);
// Indexing over x viewed as (outer, n, inner); see Backend.h.
void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                  int64_t n, int64_t inner);
void index_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer, int64_t n,
               int64_t inner);
void gather(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t n,
            int64_t inner);
void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer,
                 int64_t n, int64_t inner);
// One AdamW step (formula in Backend.h), computed in double.
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                double bias_correction1, double bias_correction2);

}  // namespace loom::cpu::ref

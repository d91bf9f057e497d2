// Plain reference versions of the kernels the Llama family adds (Backend.h): RMSNorm forward and
// backward, rotary embedding and SwiGLU. The spec and test oracle for the fast CPU kernels
// (CpuLlama.cpp) and the CUDA ones (CudaLlama.cu): one scalar loop per formula, accumulation and
// arithmetic in double, no threads. Same arguments and contracts as the Backend methods
// (contiguous f32 or f64 tensors).
//   ref::rmsnorm_forward(y_ref, rstd_ref, x, w, 1e-6);
//   EXPECT_TRUE(allclose(y_fast, y_ref, 1e-6, 1e-5));
#pragma once

#include "core/tensor/Tensor.h"

namespace loom::cpu::ref {

// x, y (N,C); weight (C) or undefined; rstd (N).
void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                     double eps);
void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                      const Tensor& weight, const Tensor& rstd);
// x, y (B,T,H,D); cos, sin (T, D/2).
void rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse);
// a (N, 2F) = [gate | up]; y (N,F).
void swiglu_forward(const Tensor& y, const Tensor& a);
void swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a);

}  // namespace loom::cpu::ref

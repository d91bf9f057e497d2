// Neural-network ops: softmax family, layer norm, RMS norm, SwiGLU, dropout, embedding, cross
// entropy.
#pragma once

#include <cstdint>

#include "core/tensor/Tensor.h"

namespace loom {

class Generator;

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Normalises over the last dim; weight/bias (C,) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// RMSNorm over the last dim (Llama): x * rsqrt(mean(x^2) + eps) * weight; weight (C,) may be
// undefined.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
// SwiGLU activation of a fused [gate | up] projection: a (..., 2F) -> silu(a[..., :F]) * a[..., F:]
// (..., F), one fused kernel forward and backward.
Tensor swiglu(const Tensor& a);
// swiglu's backward rule as a plain (non-recorded) kernel call: dy (..., F), a (..., 2F) -> da.
Tensor swiglu_backward(const Tensor& dy, const Tensor& a);
// Inverted dropout: zeroes with probability p and scales the rest by 1/(1-p). The mask comes from
// the Philox stream of `gen` (counters reserved per call), so it is reproducible and independent
// of threads. Identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);
// weight (V,C), ids (any shape, I64) -> (ids.shape..., C). Out-of-range ids throw ValueError.
Tensor embedding(const Tensor& weight, const Tensor& ids);

enum class Reduction { Mean, Sum, None };
// logits (N,V), targets (N) I64. Mean divides by the number of non-ignored targets (0 if none).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::Mean);

}  // namespace loom

// Fused scaled-dot-product attention: softmax(q k^T * scale [+ causal mask]) v in one op.
// q, k, v (B,H,T,D). Forward keeps only the output and a per-row log-sum-exp (B,H,T); backward
// recomputes the probabilities block by block, so the (B,H,T,T) matrix is never stored.
#pragma once

#include "core/tensor/Tensor.h"

namespace loom {

// scale <= 0 means 1/sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = true, double scale = -1.0);

}  // namespace loom

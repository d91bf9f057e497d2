// Reference scaled-dot-product attention: the spec and test oracle of the fused CPU (and CUDA)
// attention kernels. Per (b,h) head it materialises the full (T,T) score matrix, which the fast
// kernels never do. q,k,v,out,dq,dk,dv,dout (B,H,T,D) contiguous; lse (B,H,T).
//   S = q k^T * scale (+ -inf above the diagonal when causal); P = softmax(S); out = P v;
//   lse = logsumexp(S) per row.
// Backward: dv = P^T dout; dP = dout v^T; dS = P * (dP - rowsum(dout * out)); dq = dS k * scale;
//   dk = dS^T q * scale.
#pragma once

#include "core/tensor/Tensor.h"

namespace loom::cpu::ref {

void attention_forward_ref(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                           const Tensor& v, double scale, bool causal);
void attention_backward_ref(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                            const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse, double scale, bool causal);

}  // namespace loom::cpu::ref

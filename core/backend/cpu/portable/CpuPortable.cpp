// The CPU kernels of a portable build (-DLOOM_AVX2=OFF, for x86-64 CPUs without AVX2/FMA and for
// other architectures): CMake compiles this file instead of the AVX2 ones (CpuElementwise,
// CpuReduce, CpuNn, CpuLlama, CpuAttention, CpuOptim), and every method runs the plain reference
// kernel from cpu/ref/ — the spec the fast kernels are tested against, so results agree with them
// to the tolerances in tests/core. GEMM still goes through OpenBLAS (CpuGemm.cpp), indexing,
// copies and random fills through their own (intrinsic-free) files. Slower, never different.
#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/AttentionRef.h"
#include "core/backend/cpu/ref/ElementwiseRef.h"
#include "core/backend/cpu/ref/LlamaRef.h"
#include "core/backend/cpu/ref/NnRef.h"

namespace loom::cpu {

void CpuBackend::unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha, double beta) {
  ref::unary(op, out, x, alpha, beta);
}
void CpuBackend::binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  ref::binary(op, out, a, b);
}
void CpuBackend::where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  ref::where(out, cond, a, b);
}
void CpuBackend::reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x,
                        int64_t outer, int64_t n, int64_t inner) {
  ref::reduce(op, out, indices, x, outer, n, inner);
}
void CpuBackend::softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  ref::softmax_forward(y, x, log);
}
void CpuBackend::softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  ref::softmax_backward(dx, dy, y, log);
}
void CpuBackend::layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd,
                                   const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   double eps) {
  ref::layernorm_forward(y, mean, rstd, x, weight, bias, eps);
}
void CpuBackend::layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                    const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    const Tensor& mean, const Tensor& rstd) {
  ref::layernorm_backward(dx, dweight, dbias, dy, x, weight, mean, rstd);
}
void CpuBackend::rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x,
                                 const Tensor& weight, double eps) {
  ref::rmsnorm_forward(y, rstd, x, weight, eps);
}
void CpuBackend::rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                                  const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  ref::rmsnorm_backward(dx, dweight, dy, x, weight, rstd);
}
void CpuBackend::rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin,
                      bool inverse) {
  ref::rope(y, x, cos, sin, inverse);
}
void CpuBackend::swiglu_forward(const Tensor& y, const Tensor& a) { ref::swiglu_forward(y, a); }
void CpuBackend::swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a) {
  ref::swiglu_backward(da, dy, a);
}
void CpuBackend::attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                   const Tensor& k, const Tensor& v, double scale, bool causal) {
  ref::attention_forward_ref(out, lse, q, k, v, scale, causal);
}
void CpuBackend::attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                    const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    double scale, bool causal) {
  ref::attention_backward_ref(dq, dk, dv, dout, q, k, v, out, lse, scale, causal);
}
void CpuBackend::cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                                       const Tensor& targets, int64_t ignore_index) {
  ref::cross_entropy_forward(loss, lse, logits, targets, ignore_index);
}
void CpuBackend::cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss,
                                        const Tensor& logits, const Tensor& targets,
                                        const Tensor& lse, int64_t ignore_index) {
  ref::cross_entropy_backward(dlogits, dloss, logits, targets, lse, ignore_index);
}
void CpuBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m,
                            const Tensor& v, double lr, double beta1, double beta2, double eps,
                            double weight_decay, double bias_correction1,
                            double bias_correction2) {
  ref::adamw_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                  bias_correction2);
}

}  // namespace loom::cpu

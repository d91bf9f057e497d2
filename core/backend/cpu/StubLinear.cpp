// TEMPORARY stubs for the Linear kernels; deleted when CpuGemm.cpp/CpuAttention.cpp land.
#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {
#define LOOM_STUB(name) throw InternalError("cpu kernel " #name " not implemented yet")
void CpuBackend::gemm(const Tensor&, const Tensor&, const Tensor&, bool, bool, double, double) { LOOM_STUB(gemm); }
void CpuBackend::attention_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, bool) { LOOM_STUB(attn); }
void CpuBackend::attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, bool) { LOOM_STUB(attn); }
}  // namespace loom::cpu

// TEMPORARY stubs for the Nn kernels; deleted when CpuNn.cpp/CpuIndexing.cpp/CpuOptim.cpp land.
#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {
#define LOOM_STUB(name) throw InternalError("cpu kernel " #name " not implemented yet")
void CpuBackend::softmax_forward(const Tensor&, const Tensor&, bool) { LOOM_STUB(softmax); }
void CpuBackend::softmax_backward(const Tensor&, const Tensor&, const Tensor&, bool) { LOOM_STUB(softmax); }
void CpuBackend::layernorm_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double) { LOOM_STUB(ln); }
void CpuBackend::layernorm_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) { LOOM_STUB(ln); }
void CpuBackend::cross_entropy_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t) { LOOM_STUB(ce); }
void CpuBackend::cross_entropy_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t) { LOOM_STUB(ce); }
void CpuBackend::index_select(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) { LOOM_STUB(idx); }
void CpuBackend::index_add(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) { LOOM_STUB(idx); }
void CpuBackend::gather(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) { LOOM_STUB(idx); }
void CpuBackend::scatter_add(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) { LOOM_STUB(idx); }
void CpuBackend::adamw_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, double, double, double, double, double, double) { LOOM_STUB(adamw); }
}  // namespace loom::cpu

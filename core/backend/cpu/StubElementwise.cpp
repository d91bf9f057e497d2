// TEMPORARY stubs for the Elementwise kernels; deleted when CpuElementwise.cpp/CpuReduce.cpp land.
#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {
#define LOOM_STUB(name) throw InternalError("cpu kernel " #name " not implemented yet")
void CpuBackend::unary(UnaryOp, const Tensor&, const Tensor&, double, double) { LOOM_STUB(unary); }
void CpuBackend::binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) { LOOM_STUB(binary); }
void CpuBackend::where(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { LOOM_STUB(where); }
void CpuBackend::reduce(ReduceOp, const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t) { LOOM_STUB(reduce); }
}  // namespace loom::cpu

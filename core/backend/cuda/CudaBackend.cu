// Placeholder until the CUDA backend lands (issue: CUDA backend). Compiled by nvcc so the CUDA
// toolchain is exercised in every build; reports no backend.
#include "core/backend/Backend.h"

namespace loom {
Backend* cuda_backend() { return nullptr; }
}  // namespace loom

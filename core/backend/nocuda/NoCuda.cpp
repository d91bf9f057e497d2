// Compiled instead of core/backend/cuda/ when Loom is built without nvcc (-DLOOM_CUDA=OFF).
#include "core/backend/Backend.h"

namespace loom {
Backend* cuda_backend() { return nullptr; }
}  // namespace loom

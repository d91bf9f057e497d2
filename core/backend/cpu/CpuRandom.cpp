// Random fills: element i is a pure function of (seed, offset + i) through Philox, so the values
// are the same for any thread count (and on CUDA, which uses the same Philox.h).
#include <cmath>

#include "core/backend/cpu/CpuBackend.h"
#include "core/random/Philox.h"

namespace loom::cpu {

void CpuBackend::fill_random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset,
                             double a, double b) {
  LOOM_INTERNAL_ASSERT(out.is_contiguous(), "fill_random needs a contiguous output");
  const int64_t n = out.numel();
  visit_dtype(out.dtype(), [&]<class T>() {
    if constexpr (std::is_same_v<T, bool> || std::is_integral_v<T>) {
      throw ValueError(detail::str_cat("fill_random: expected a floating dtype, got ",
                                       dtype_name(out.dtype())));
    } else {
      T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (n >= 65536)
      for (int64_t i = 0; i < n; ++i) {
        double v;
        switch (kind) {
          case RandomKind::Uniform: v = std::fma(b - a, philox::uniform_at(seed, offset, uint64_t(i)), a); break;
          case RandomKind::Normal: v = std::fma(b, philox::normal_at(seed, offset, uint64_t(i)), a); break;
          default: v = philox::uniform_at(seed, offset, uint64_t(i)) < a ? 1.0 : 0.0; break;
        }
        o[i] = T(static_cast<float>(v));
        if constexpr (std::is_same_v<T, double>) o[i] = v;
      }
    }
  });
}

}  // namespace loom::cpu

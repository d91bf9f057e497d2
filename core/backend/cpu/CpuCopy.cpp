// fill and copy (with dtype conversion) over any strided layout; contiguous runs of one dtype
// are memcpy'd and contiguous f32 <-> f64 runs take a vectorisable loop.
#include <cstring>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/StridedLoop.h"

namespace loom::cpu {

namespace {
template <class D, class S>
inline D convert(S s) {
  if constexpr (std::is_same_v<D, bool>) {
    return static_cast<float>(s) != 0.0f;
  } else if constexpr (std::is_same_v<D, BFloat16> || std::is_same_v<D, Half>) {
    return D(static_cast<float>(s));
  } else if constexpr (std::is_same_v<S, BFloat16> || std::is_same_v<S, Half>) {
    return static_cast<D>(static_cast<float>(s));
  } else {
    return static_cast<D>(s);
  }
}
}  // namespace

void CpuBackend::fill(const Tensor& out, double value) {
  visit_dtype(out.dtype(), [&]<class T>() {
    T v = convert<T>(value);
    strided_loop<1>({&out}, [&](std::array<char*, 1> p, std::array<int64_t, 1> s, int64_t n) {
      if (s[0] == int64_t(sizeof(T))) {
        T* o = reinterpret_cast<T*>(p[0]);
        for (int64_t i = 0; i < n; ++i) o[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
      }
    });
  });
}

void CpuBackend::copy(const Tensor& dst, const Tensor& src) {
  LOOM_INTERNAL_ASSERT(dst.shape() == src.shape(), "copy shapes ", dst.shape(), " vs ", src.shape());
  visit_dtype(dst.dtype(), [&]<class D>() {
    visit_dtype(src.dtype(), [&]<class S>() {
      strided_loop<2>({&dst, &src}, [&](std::array<char*, 2> p, std::array<int64_t, 2> s,
                                        int64_t n) {
        const bool contiguous = s[0] == int64_t(sizeof(D)) && s[1] == int64_t(sizeof(S));
        if constexpr (std::is_same_v<D, S>) {
          if (contiguous) {
            std::memcpy(p[0], p[1], size_t(n) * sizeof(D));
            return;
          }
        } else if constexpr (std::is_floating_point_v<D> && std::is_floating_point_v<S>) {
          if (contiguous) {  // f32 <-> f64 as a loop the compiler vectorises
            D* o = reinterpret_cast<D*>(p[0]);
            const S* x = reinterpret_cast<const S*>(p[1]);
            for (int64_t i = 0; i < n; ++i) o[i] = static_cast<D>(x[i]);
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<D*>(p[0] + i * s[0]) =
              convert<D>(*reinterpret_cast<const S*>(p[1] + i * s[1]));
      });
    });
  });
}

}  // namespace loom::cpu

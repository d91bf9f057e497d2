// Fast CPU kernels of the Llama family's ops (Backend.h contracts; spec in ref/LlamaRef.cpp):
// RMSNorm forward / backward, rotary embedding and SwiGLU. Rows are independent and split
// statically over OpenMP threads, each row computed in a fixed order, so results never depend on
// the thread count. Row sums of squares and dot products accumulate in double (also for f32);
// RMSNorm's dweight is summed per fixed block of rows, then the blocks in order (RowBlocks.h). f32
// SwiGLU uses the AVX2 sigmoid of VecMath.h; the elementwise RoPE loops are left to the compiler's
// vectoriser.
#include <immintrin.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/RowBlocks.h"
#include "core/backend/cpu/VecMath.h"

namespace loom::cpu {

namespace {

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined()) LOOM_INTERNAL_ASSERT(t->is_contiguous(), op, ": expected contiguous tensors");
}

inline double hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// sum_i a[i] * b[i] in double, the products exact (f32 inputs widened before the FMA).
template <class T>
double dot(const T* a, const T* b, int64_t n) {
  int64_t i = 0;
  double s = 0;
  if constexpr (kVec<T>) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
      const __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
      lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)),
                           _mm256_cvtps_pd(_mm256_castps256_ps128(vb)), lo);
      hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)),
                           _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)), hi);
    }
    s = hsum_pd(_mm256_add_pd(lo, hi));
  }
  for (; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// One row of RMSNorm backward: dx (may be null) and the dweight partial pw (may be null).
// tmp holds C scratch values (g = dy * w).
template <class T>
void rms_backward_row(T* dx, double* pw, T* tmp, const T* dy, const T* x, const T* w, T rstd,
                      int64_t C) {
  for (int64_t c = 0; c < C; ++c) tmp[c] = w ? dy[c] * w[c] : dy[c];
  if (pw)
    for (int64_t c = 0; c < C; ++c) pw[c] += double(dy[c]) * double(x[c]) * double(rstd);
  if (!dx) return;
  // mean(g * xhat) = rstd * sum(g * x) / C
  const T k = T(double(rstd) * double(rstd) * dot<T>(tmp, x, C) / double(C));
  for (int64_t c = 0; c < C; ++c) dx[c] = rstd * (tmp[c] - x[c] * k);
}

}  // namespace

void CpuBackend::rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x,
                                 const Tensor& weight, double eps) {
  check_contiguous("rmsnorm_forward", {&y, &rstd, &x, &weight});
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  visit_float(x.dtype(), "rmsnorm_forward", [&]<class T>() {
    const T* in = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    T* out = y.data<T>();
    T* ro = rstd.defined() ? rstd.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElems && N > 1)
    for (int64_t i = 0; i < N; ++i) {
      const T* xr = in + i * C;
      const T r = T(1.0 / std::sqrt(dot<T>(xr, xr, C) / double(C) + eps));
      T* yr = out + i * C;
      if (w) {
        for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * r * w[c];
      } else {
        for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * r;
      }
      if (ro) ro[i] = r;
    }
  });
}

void CpuBackend::rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                                  const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  check_contiguous("rmsnorm_backward", {&dx, &dweight, &dy, &x, &weight, &rstd});
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  visit_float(x.dtype(), "rmsnorm_backward", [&]<class T>() {
    const bool want_w = dweight.defined();
    const int64_t blocks = norm_row_blocks(N);
    std::vector<double> pw(want_w ? size_t(blocks * C) : 0, 0.0);
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    T* d = dx.defined() ? dx.data<T>() : nullptr;
    for_each_norm_row<T>(N, C, N * C >= kParallelMinElems, [&](int64_t i, int64_t blk, T* tmp) {
      rms_backward_row<T>(d ? d + i * C : nullptr, want_w ? pw.data() + blk * C : nullptr, tmp,
                          dy.data<T>() + i * C, x.data<T>() + i * C, w, rstd.data<T>()[i], C);
    });
    if (want_w)
      sum_block_partials(pw, blocks, C, dweight.data<T>(), blocks * C >= kParallelMinElems);
  });
}

void CpuBackend::rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin,
                      bool inverse) {
  check_contiguous("rope", {&y, &x, &cos, &sin});
  const int64_t T_ = x.size(1), H = x.size(2), D = x.size(3), h = D / 2;
  const int64_t rows = x.numel() / D;  // (b, t, head) triples
  visit_float(x.dtype(), "rope", [&]<class T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelMinElems && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = (r / H) % T_;
      const T* c = cos.data<T>() + t * h;
      const T* s = sin.data<T>() + t * h;
      const T* x1 = in + r * D;
      const T* x2 = x1 + h;
      T* y1 = out + r * D;
      T* y2 = y1 + h;
      for (int64_t j = 0; j < h; ++j) {
        const T a = x1[j], b = x2[j], sj = sign * s[j];
        y1[j] = a * c[j] - b * sj;
        y2[j] = b * c[j] + a * sj;
      }
    }
  });
}

namespace {

// y = silu(g) * u for one row (F values of gate g, F of up u).
template <class T>
void swiglu_row(T* y, const T* g, const T* u, int64_t F) {
  int64_t j = 0;
  if constexpr (kVec<T>) {
    for (; j + 8 <= F; j += 8) {
      const __m256 vg = _mm256_loadu_ps(g + j);
      const __m256 silu = _mm256_mul_ps(vg, vec::sigmoid(vg));
      _mm256_storeu_ps(y + j, _mm256_mul_ps(silu, _mm256_loadu_ps(u + j)));
    }
  }
  for (; j < F; ++j) y[j] = g[j] / (T(1) + std::exp(-g[j])) * u[j];
}

// dg = dy * u * (s + g s (1 - s)), du = dy * g * s with s = sigmoid(g).
template <class T>
void swiglu_backward_row(T* dg, T* du, const T* dy, const T* g, const T* u, int64_t F) {
  int64_t j = 0;
  if constexpr (kVec<T>) {
    for (; j + 8 <= F; j += 8) {
      const __m256 vg = _mm256_loadu_ps(g + j), vd = _mm256_loadu_ps(dy + j);
      __m256 s, oms;
      vec::sigmoid_pair(vg, s, oms);
      const __m256 silu = _mm256_mul_ps(vg, s);
      const __m256 dsilu = _mm256_fmadd_ps(silu, oms, s);
      _mm256_storeu_ps(dg + j, _mm256_mul_ps(_mm256_mul_ps(vd, _mm256_loadu_ps(u + j)), dsilu));
      _mm256_storeu_ps(du + j, _mm256_mul_ps(vd, silu));
    }
  }
  for (; j < F; ++j) {
    const T s = T(1) / (T(1) + std::exp(-g[j]));
    dg[j] = dy[j] * u[j] * (s + g[j] * s * (T(1) - s));
    du[j] = dy[j] * g[j] * s;
  }
}

}  // namespace

void CpuBackend::swiglu_forward(const Tensor& y, const Tensor& a) {
  check_contiguous("swiglu_forward", {&y, &a});
  const int64_t F = y.size(-1), N = F == 0 ? 0 : y.numel() / F;
  visit_float(a.dtype(), "swiglu_forward", [&]<class T>() {
    const T* in = a.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for schedule(static) if (N * F >= kParallelMinElems && N > 1)
    for (int64_t i = 0; i < N; ++i)
      swiglu_row<T>(out + i * F, in + i * 2 * F, in + i * 2 * F + F, F);
  });
}

void CpuBackend::swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a) {
  check_contiguous("swiglu_backward", {&da, &dy, &a});
  const int64_t F = dy.size(-1), N = F == 0 ? 0 : dy.numel() / F;
  visit_float(a.dtype(), "swiglu_backward", [&]<class T>() {
    const T* in = a.data<T>();
    const T* d = dy.data<T>();
    T* out = da.data<T>();
#pragma omp parallel for schedule(static) if (N * F >= kParallelMinElems && N > 1)
    for (int64_t i = 0; i < N; ++i) {
      swiglu_backward_row<T>(out + i * 2 * F, out + i * 2 * F + F, d + i * F, in + i * 2 * F,
                             in + i * 2 * F + F, F);
    }
  });
}

}  // namespace loom::cpu

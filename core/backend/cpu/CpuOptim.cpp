// Fused AdamW step on the CPU (Backend::adamw_step; spec in ref/NnRef.cpp). One pass over
// param, grad, m, v: decoupled weight decay, moment updates and the bias-corrected step, exactly
// in the order Backend.h documents. f32 runs 8 lanes of AVX2 per iteration (divisions and sqrt
// are IEEE-exact, so lanes and the scalar tail agree bit for bit); f64 is scalar (used by the
// optimizer's closed-form tests). Elementwise, so any thread split gives the same bits.
#include <immintrin.h>

#include <cmath>

#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {

namespace {

struct AdamCoeffs {
  double lr_wd, beta1, one_minus_beta1, beta2, one_minus_beta2, bc1, bc2, eps, lr;
};

template <class T>
inline void adamw_scalar(T& p, T g, T& m, T& v, const AdamCoeffs& k) {
  p = std::fma(-T(k.lr_wd), p, p);
  m = std::fma(T(k.beta1), m, T(k.one_minus_beta1) * g);
  v = std::fma(T(k.beta2), v, T(k.one_minus_beta2) * g * g);
  p = std::fma(-T(k.lr), (m / T(k.bc1)) / (std::sqrt(v / T(k.bc2)) + T(k.eps)), p);
}

void adamw_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamCoeffs& k) {
  const __m256 lr_wd = _mm256_set1_ps(float(k.lr_wd)), b1 = _mm256_set1_ps(float(k.beta1));
  const __m256 omb1 = _mm256_set1_ps(float(k.one_minus_beta1)), b2 = _mm256_set1_ps(float(k.beta2));
  const __m256 omb2 = _mm256_set1_ps(float(k.one_minus_beta2)), bc1 = _mm256_set1_ps(float(k.bc1));
  const __m256 bc2 = _mm256_set1_ps(float(k.bc2)), eps = _mm256_set1_ps(float(k.eps));
  const __m256 lr = _mm256_set1_ps(float(k.lr));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 vp = _mm256_loadu_ps(p + i), vg = _mm256_loadu_ps(g + i);
    vp = _mm256_fnmadd_ps(lr_wd, vp, vp);
    __m256 vm = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(omb1, vg));
    __m256 vv = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i), _mm256_mul_ps(_mm256_mul_ps(omb2, vg), vg));
    __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vv, bc2)), eps);
    vp = _mm256_fnmadd_ps(lr, _mm256_div_ps(_mm256_div_ps(vm, bc1), den), vp);
    _mm256_storeu_ps(p + i, vp);
    _mm256_storeu_ps(m + i, vm);
    _mm256_storeu_ps(v + i, vv);
  }
  for (; i < n; ++i) adamw_scalar<float>(p[i], g[i], m[i], v[i], k);
}

}  // namespace

void CpuBackend::adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m,
                            const Tensor& v, double lr, double beta1, double beta2, double eps,
                            double weight_decay, double bias_correction1,
                            double bias_correction2) {
  const int64_t n = param.numel();
  for (const Tensor* t : {&grad, &m, &v}) {
    LOOM_CHECK(t->numel() == n && t->dtype() == param.dtype(), "adamw_step: expected grad/m/v ",
               "with ", n, " elements of dtype ", dtype_name(param.dtype()), ", got ", t->numel(),
               " elements of dtype ", dtype_name(t->dtype()));
    LOOM_INTERNAL_ASSERT(t->is_contiguous(), "adamw_step: expected contiguous tensors");
  }
  LOOM_INTERNAL_ASSERT(param.is_contiguous(), "adamw_step: expected a contiguous param");
  const AdamCoeffs k{lr * weight_decay, beta1, 1 - beta1, beta2, 1 - beta2,
                     bias_correction1, bias_correction2, eps, lr};
  constexpr int64_t kChunk = 8192;  // elements per job (a multiple of 8: lanes never straddle)
  const int64_t jobs = (n + kChunk - 1) / kChunk;
  visit_float(param.dtype(), "adamw_step", [&]<class T>() {
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* mm = m.data<T>();
    T* vv = v.data<T>();
#pragma omp parallel for schedule(static) if (jobs > 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int64_t i0 = job * kChunk, len = std::min(kChunk, n - i0);
      if constexpr (std::is_same_v<T, float>) {
        adamw_f32(p + i0, g + i0, mm + i0, vv + i0, len, k);
      } else {
        for (int64_t i = i0; i < i0 + len; ++i) adamw_scalar<T>(p[i], g[i], mm[i], vv[i], k);
      }
    }
  });
}

}  // namespace loom::cpu

// AVX2/FMA helpers for the f32 CPU kernels: vectorised exp, tanh, sigmoid, GELU (tanh form) and its
// derivative, 8 floats at a time. exp uses Cephes' range reduction (x = n ln2 + r, |r| <= ln2/2)
// and degree-6 polynomial, then scales by 2^n in two steps so results in the subnormal range get
// a single rounding. tanh uses Cephes' odd polynomial for |x| < 0.625 and 1 - 2/(e^{2|x|}+1) above,
// where that form has no cancellation. Both are within a few ulp of std:: (tests/core/
// ElementwiseTest.cpp measures it), propagate NaN and handle +-inf.
// NB: Loom's CPU kernels need AVX2+FMA (CMake option LOOM_AVX2, on by default).
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__)
#error "VecMath.h needs AVX2 and FMA: configure with -DLOOM_AVX2=ON"
#endif

#include <immintrin.h>

namespace loom::cpu::vec {

inline __m256 exp(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-104.0f), hi = _mm256_set1_ps(89.0f);
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n = 2^n1 * 2^n2 with n1 = n >> 1: both factors stay normal for n in [-150, 129].
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i n1 = _mm256_srai_epi32(ni, 1);
  __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN in, NaN out
}

inline __m256 tanh(__m256 x) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  __m256 ax = _mm256_andnot_ps(sign_mask, x);
  // Small |x|: x + x^3 P(x^2).
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  // Large |x|: sign(x) * (1 - 2 / (exp(2|x|) + 1)); exp overflow gives exactly 1.
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = exp(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  big = _mm256_or_ps(big, _mm256_and_ps(x, sign_mask));
  __m256 use_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm256_blendv_ps(big, small, use_small);
}

// sigmoid(z) and 1 - sigmoid(z) without cancellation or early underflow: with e = exp(-|z|),
// sigmoid(|z|) = 1/(1+e) and sigmoid(-|z|) = e/(1+e) (ref::sigmoid_pair is the scalar spec).
inline void sigmoid_pair(__m256 z, __m256& s, __m256& one_minus_s) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
  __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), az));
  __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
  __m256 er = _mm256_mul_ps(e, r);
  __m256 pos = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ);
  s = _mm256_blendv_ps(er, r, pos);
  one_minus_s = _mm256_blendv_ps(r, er, pos);
  __m256 nan = _mm256_cmp_ps(z, z, _CMP_UNORD_Q);
  s = _mm256_blendv_ps(s, z, nan);
  one_minus_s = _mm256_blendv_ps(one_minus_s, z, nan);
}

inline __m256 sigmoid(__m256 x) {
  __m256 s, oms;
  sigmoid_pair(x, s, oms);
  return s;
}

// u = sqrt(2/pi) (x + 0.044715 x^3), the argument of tanh in GPT-2's GELU.
inline __m256 gelu_inner(__m256 x) {
  __m256 x2 = _mm256_mul_ps(x, x);
  __m256 k = _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x2, _mm256_set1_ps(1.0f));
  return _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_mul_ps(x, k));
}

// gelu(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u): the same value without the cancellation of
// 1 + tanh(u) for negative x.
inline __m256 gelu(__m256 x) {
  __m256 u = gelu_inner(x);
  return _mm256_mul_ps(x, sigmoid(_mm256_add_ps(u, u)));
}

// dy * gelu'(x). With s = sigmoid(2u): 0.5(1 + tanh u) = s and 1 - tanh^2 u = 4 s (1 - s), so
// gelu'(x) = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3*0.044715 x^2).
inline __m256 gelu_backward(__m256 dy, __m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 u = gelu_inner(x);
  __m256 s, oms;
  sigmoid_pair(_mm256_add_ps(u, u), s, oms);
  __m256 x2 = _mm256_mul_ps(x, x);
  __m256 du = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                            _mm256_fmadd_ps(_mm256_set1_ps(3.0f * 0.044715f), x2, one));
  __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(x, x), s), oms);
  return _mm256_mul_ps(dy, _mm256_fmadd_ps(t, du, s));
}

}  // namespace loom::cpu::vec

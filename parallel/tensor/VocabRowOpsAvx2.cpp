// f32 row primitives of the vocab-parallel cross entropy, 8-wide AVX2 (compiled when
// LOOM_AVX2=ON; VocabRowOpsPortable.cpp otherwise). Tails run the same formulas in scalar code.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/backend/cpu/VecMath.h"
#include "parallel/tensor/VocabCrossEntropyCpu.h"

namespace loom::tp::cpu {

namespace {

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

}  // namespace

float row_max_f32(const float* row, int64_t n) {
  float v = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  __m256 acc = _mm256_set1_ps(v);
  for (; j + 8 <= n; j += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(row + j));
  v = hmax(acc);
  for (; j < n; ++j) v = std::max(v, row[j]);
  return v;
}

float row_sum_exp_f32(const float* row, int64_t n, float m) {
  int64_t j = 0;
  __m256 acc = _mm256_setzero_ps(), mv = _mm256_set1_ps(m);
  for (; j + 8 <= n; j += 8)
    acc = _mm256_add_ps(acc, loom::cpu::vec::exp(_mm256_sub_ps(_mm256_loadu_ps(row + j), mv)));
  float s = hsum(acc);
  for (; j < n; ++j) s += std::exp(row[j] - m);
  return s;
}

void row_scaled_softmax_f32(float* out, const float* row, int64_t n, float lse, float g) {
  int64_t j = 0;
  __m256 lv = _mm256_set1_ps(lse), gv = _mm256_set1_ps(g);
  for (; j + 8 <= n; j += 8) {
    __m256 p = loom::cpu::vec::exp(_mm256_sub_ps(_mm256_loadu_ps(row + j), lv));
    _mm256_storeu_ps(out + j, _mm256_mul_ps(p, gv));
  }
  for (; j < n; ++j) out[j] = std::exp(row[j] - lse) * g;
}

}  // namespace loom::tp::cpu

// f32 row primitives of the vocab-parallel cross entropy for a portable build (-DLOOM_AVX2=OFF):
// the same formulas as VocabRowOpsAvx2.cpp in scalar code.
#include <algorithm>
#include <cmath>
#include <limits>

#include "parallel/tensor/VocabCrossEntropyCpu.h"

namespace loom::tp::cpu {

float row_max_f32(const float* row, int64_t n) {
  float v = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) v = std::max(v, row[j]);
  return v;
}

float row_sum_exp_f32(const float* row, int64_t n, float m) {
  float s = 0.0f;
  for (int64_t j = 0; j < n; ++j) s += std::exp(row[j] - m);
  return s;
}

void row_scaled_softmax_f32(float* out, const float* row, int64_t n, float lse, float g) {
  for (int64_t j = 0; j < n; ++j) out[j] = std::exp(row[j] - lse) * g;
}

}  // namespace loom::tp::cpu

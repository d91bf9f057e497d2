// Fused CPU row kernels of the vocab-parallel cross entropy (f32 with AVX2, f64 scalar): one pass
// for the local max, one for the local sum of exp and the target logit, one for the backward
// softmax - onehot. VocabParallel.cpp uses them for contiguous CPU logits instead of the
// op-composed path (about a dozen passes over N x V/tp), which stays as the reference and runs on
// other devices. Columns >= `real` are vocabulary padding: excluded from max and sum, gradient 0.
// `col[n]`: the target's local column on this rank, kTargetElsewhere, or kTargetIgnored.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::tp::cpu {

constexpr int64_t kTargetElsewhere = -1;
constexpr int64_t kTargetIgnored = -2;

// m (N) <- max over the real columns of each row of x (N, Vl) (-inf when real == 0).
void row_max(const Tensor& m, const Tensor& x, int64_t real);
// s (N) <- sum_j<real exp(x[n,j] - m[n]); tl (N) <- x[n, col[n]] where col[n] >= 0, else 0.
void row_sum_exp_and_pick(const Tensor& s, const Tensor& tl, const Tensor& x, const Tensor& m,
                          const std::vector<int64_t>& col, int64_t real);
// dx (N, Vl) <- (exp(x - lse[n]) - [j == col[n]]) * g[n] on real columns of non-ignored rows, 0
// elsewhere. lse, g (N).
void softmax_minus_onehot(const Tensor& dx, const Tensor& x, const Tensor& lse, const Tensor& g,
                          const std::vector<int64_t>& col, int64_t real);

// f32 row primitives behind the kernels above, one implementation per build (VocabRowOpsAvx2.cpp
// or VocabRowOpsPortable.cpp): max of row[0..n), sum of exp(row[j] - m), out[j] = exp(row[j] - lse) * g.
float row_max_f32(const float* row, int64_t n);
float row_sum_exp_f32(const float* row, int64_t n, float m);
void row_scaled_softmax_f32(float* out, const float* row, int64_t n, float lse, float g);

}  // namespace loom::tp::cpu

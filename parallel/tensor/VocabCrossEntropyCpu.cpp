// Row kernels of the vocab-parallel cross entropy on the CPU (VocabCrossEntropyCpu.h). Rows run in
// parallel (OpenMP); f32 rows use the build's row primitives (8-wide AVX2 with the shared
// vectorised exp, or scalar in a portable build); per-row results do not depend on the thread count.
#include "parallel/tensor/VocabCrossEntropyCpu.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/util/Check.h"

namespace loom::tp::cpu {

namespace {

constexpr int64_t kParallelMinElems = 1 << 15;  // below this, threads cost more than they save

// Rows of any float type: f32 goes to the row primitives of this build (AVX2 or portable,
// VocabRowOps*.cpp, chosen by CMake); f64 runs the scalar loops.
template <class T>
T max_of(const T* row, int64_t n) {
  if constexpr (std::is_same_v<T, float>) return row_max_f32(row, n);
  T v = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) v = std::max(v, row[j]);
  return v;
}

template <class T>
T sum_exp(const T* row, int64_t n, T m) {
  if constexpr (std::is_same_v<T, float>) return row_sum_exp_f32(row, n, m);
  T s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(row[j] - m);
  return s;
}

// out[j] = exp(row[j] - lse) * g for j < n.
template <class T>
void scaled_softmax(T* out, const T* row, int64_t n, T lse, T g) {
  if constexpr (std::is_same_v<T, float>) {
    row_scaled_softmax_f32(out, row, n, lse, g);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = std::exp(row[j] - lse) * g;
  }
}

void check_f_contig(const char* op, const Tensor& t) {
  LOOM_INTERNAL_ASSERT(t.device().is_cpu() && t.is_contiguous() &&
                           (t.dtype() == DType::F32 || t.dtype() == DType::F64),
                       op, ": expected contiguous f32/f64 CPU tensors");
}

}  // namespace

void row_max(const Tensor& m, const Tensor& x, int64_t real) {
  check_f_contig("row_max", x);
  check_f_contig("row_max", m);
  const int64_t N = x.size(0), V = x.size(1);
  visit_float(x.dtype(), "vocab_parallel_cross_entropy", [&]<class T>() {
    const T* in = x.data<T>();
    T* out = m.data<T>();
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElems && N > 1)
    for (int64_t n = 0; n < N; ++n) out[n] = max_of<T>(in + n * V, real);
  });
}

void row_sum_exp_and_pick(const Tensor& s, const Tensor& tl, const Tensor& x, const Tensor& m,
                          const std::vector<int64_t>& col, int64_t real) {
  check_f_contig("row_sum_exp", x);
  const int64_t N = x.size(0), V = x.size(1);
  LOOM_INTERNAL_ASSERT(int64_t(col.size()) == N, "row_sum_exp: ", col.size(), " targets for ", N);
  visit_float(x.dtype(), "vocab_parallel_cross_entropy", [&]<class T>() {
    const T* in = x.data<T>();
    const T* mx = m.data<T>();
    T* sum = s.data<T>();
    T* pick = tl.data<T>();
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElems && N > 1)
    for (int64_t n = 0; n < N; ++n) {
      sum[n] = sum_exp<T>(in + n * V, real, mx[n]);
      pick[n] = col[size_t(n)] >= 0 ? in[n * V + col[size_t(n)]] : T(0);
    }
  });
}

void softmax_minus_onehot(const Tensor& dx, const Tensor& x, const Tensor& lse, const Tensor& g,
                          const std::vector<int64_t>& col, int64_t real) {
  check_f_contig("softmax_minus_onehot", x);
  check_f_contig("softmax_minus_onehot", dx);
  const int64_t N = x.size(0), V = x.size(1);
  visit_float(x.dtype(), "vocab_parallel_cross_entropy", [&]<class T>() {
    const T* in = x.data<T>();
    const T* l = lse.data<T>();
    const T* gr = g.data<T>();
    T* out = dx.data<T>();
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElems && N > 1)
    for (int64_t n = 0; n < N; ++n) {
      T* o = out + n * V;
      const int64_t c = col[size_t(n)];
      if (c == kTargetIgnored) {
        std::fill(o, o + V, T(0));
        continue;
      }
      scaled_softmax<T>(o, in + n * V, real, l[n], gr[n]);
      std::fill(o + real, o + V, T(0));
      if (c >= 0) o[c] -= gr[n];
    }
  });
}

}  // namespace loom::tp::cpu

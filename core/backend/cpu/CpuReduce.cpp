// CPU sum/max/min over the middle axis of a contiguous (outer, n, inner) tensor.
// Summation order is fixed and independent of the thread count:
//  - inner == 1 (reducing the last dim): each row is cut into fixed 4096-element blocks; a block is
//    summed with 16 fixed vector lanes (4 AVX2 accumulators) combined in a fixed tree, then the
//    block sums are added left to right. Threads only decide who computes which block.
//  - inner > 1: every output element adds its n inputs left to right.
// f32 inputs accumulate in f64 (one convert per element: cheap next to the memory traffic, and
// it makes f32 sums exact to about 1 f32 ulp for any n we meet); f64 accumulates in f64; i32/i64
// in i64. Max/min return the first arg max/min; a NaN wins (and the first NaN's index is kept).
#include <immintrin.h>

#include <vector>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/ref/ElementwiseRef.h"

namespace loom::cpu {

namespace {

constexpr int64_t kBlock = 4096;       // elements per summation block (fixed: part of the order)
constexpr int64_t kInnerChunk = 512;   // output columns per job when inner > 1
constexpr int64_t kParallelWork = 32768;

template <class T>
using AccOf = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

double hsum_fixed(__m256d a0, __m256d a1, __m256d a2, __m256d a3) {
  __m256d s = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
  alignas(32) double l[4];
  _mm256_store_pd(l, s);
  return (l[0] + l[1]) + (l[2] + l[3]);
}

// Sum of n <= kBlock contiguous values in the fixed lane order described above.
template <class T>
AccOf<T> block_sum(const T* x, int64_t n) {
  int64_t i = 0;
  AccOf<T> body = 0;
  if constexpr (std::is_same_v<T, float>) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 16 <= n; i += 16) {
      a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
      a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
      a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)));
      a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12)));
    }
    body = hsum_fixed(a0, a1, a2, a3);
  } else if constexpr (std::is_same_v<T, double>) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 16 <= n; i += 16) {
      a0 = _mm256_add_pd(a0, _mm256_loadu_pd(x + i));
      a1 = _mm256_add_pd(a1, _mm256_loadu_pd(x + i + 4));
      a2 = _mm256_add_pd(a2, _mm256_loadu_pd(x + i + 8));
      a3 = _mm256_add_pd(a3, _mm256_loadu_pd(x + i + 12));
    }
    body = hsum_fixed(a0, a1, a2, a3);
  }
  AccOf<T> tail = 0;
  for (; i < n; ++i) tail += AccOf<T>(x[i]);
  return body + tail;
}

template <class T>
void sum_last_dim(T* out, const T* x, int64_t outer, int64_t n) {
  const int64_t nblocks = std::max<int64_t>(1, (n + kBlock - 1) / kBlock);
  std::vector<AccOf<T>> partial(size_t(outer * nblocks));
  const int64_t jobs = outer * nblocks;
#pragma omp parallel for schedule(static) if (outer * n >= kParallelWork && jobs > 1)
  for (int64_t job = 0; job < jobs; ++job) {
    int64_t row = job / nblocks, blk = job % nblocks;
    int64_t start = blk * kBlock, len = std::min(kBlock, n - start);
    partial[size_t(job)] = len > 0 ? block_sum<T>(x + row * n + start, len) : AccOf<T>(0);
  }
  for (int64_t row = 0; row < outer; ++row) {
    AccOf<T> acc = 0;
    for (int64_t b = 0; b < nblocks; ++b) acc += partial[size_t(row * nblocks + b)];
    out[row] = T(acc);
  }
}

template <class T>
void sum_middle_dim(T* out, const T* x, int64_t outer, int64_t n, int64_t inner) {
  const int64_t chunks = (inner + kInnerChunk - 1) / kInnerChunk;
  const int64_t jobs = outer * chunks;
#pragma omp parallel for schedule(static) if (outer * n * inner >= kParallelWork && jobs > 1)
  for (int64_t job = 0; job < jobs; ++job) {
    int64_t o = job / chunks, i0 = (job % chunks) * kInnerChunk;
    int64_t len = std::min(kInnerChunk, inner - i0);
    AccOf<T> acc[kInnerChunk] = {};
    for (int64_t j = 0; j < n; ++j) {
      const T* row = x + (o * n + j) * inner + i0;
      for (int64_t i = 0; i < len; ++i) acc[i] += AccOf<T>(row[i]);
    }
    for (int64_t i = 0; i < len; ++i) out[o * inner + i0 + i] = T(acc[i]);
  }
}

template <class T>
inline bool better(bool is_max, T v, T best) {
  if (best != best) return false;  // a NaN already won
  if (v != v) return true;
  return is_max ? v > best : v < best;
}

template <class T>
void argext(bool is_max, T* out, int64_t* idx, const T* x, int64_t outer, int64_t n,
            int64_t inner) {
  const int64_t chunks = (inner + kInnerChunk - 1) / kInnerChunk;
  const int64_t jobs = outer * chunks;
#pragma omp parallel for schedule(static) if (outer * n * inner >= kParallelWork && jobs > 1)
  for (int64_t job = 0; job < jobs; ++job) {
    int64_t o = job / chunks, i0 = (job % chunks) * kInnerChunk;
    int64_t len = std::min(kInnerChunk, inner - i0);
    T best[kInnerChunk];
    int64_t arg[kInnerChunk] = {};
    const T* base = x + o * n * inner + i0;
    for (int64_t i = 0; i < len; ++i) best[i] = base[i];
    for (int64_t j = 1; j < n; ++j) {
      const T* row = base + j * inner;
      for (int64_t i = 0; i < len; ++i) {
        if (better(is_max, row[i], best[i])) {
          best[i] = row[i];
          arg[i] = j;
        }
      }
    }
    for (int64_t i = 0; i < len; ++i) {
      out[o * inner + i0 + i] = best[i];
      if (idx) idx[o * inner + i0 + i] = arg[i];
    }
  }
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x,
                        int64_t outer, int64_t n, int64_t inner) {
  ref::check_reduce(op, x.dtype());
  LOOM_INTERNAL_ASSERT(x.is_contiguous() && out.is_contiguous(), "reduce needs contiguous x/out");
  LOOM_INTERNAL_ASSERT(x.numel() == outer * n * inner && out.numel() == outer * inner,
                       "reduce sizes ", outer, "x", n, "x", inner, " vs x ", x.shape(), " out ",
                       out.shape());
  LOOM_INTERNAL_ASSERT(out.dtype() == x.dtype(), "reduce out dtype");
  LOOM_CHECK(op == ReduceOp::Sum || n > 0, "reduce: expected a non-empty dim for max/min, got ",
             "size 0");
  LOOM_INTERNAL_ASSERT(!indices.defined() || (indices.dtype() == DType::I64 &&
                                              indices.is_contiguous() &&
                                              indices.numel() == out.numel()),
                       "reduce indices");
  if (out.numel() == 0) return;
  visit_dtype(x.dtype(), [&]<class T>() {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      T* po = out.data<T>();
      const T* px = x.data<T>();
      if (op == ReduceOp::Sum) {
        if (inner == 1) {
          sum_last_dim<T>(po, px, outer, n);
        } else {
          sum_middle_dim<T>(po, px, outer, n, inner);
        }
      } else {
        int64_t* pi = indices.defined() ? indices.data<int64_t>() : nullptr;
        argext<T>(op == ReduceOp::Max, po, pi, px, outer, n, inner);
      }
    }
  });
}

}  // namespace loom::cpu

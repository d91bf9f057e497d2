// N-ary strided iteration for elementwise CPU kernels. Dims are coalesced (adjacent dims that are
// contiguous with each other in every operand merge), then the outer index space is split into
// fixed-size chunks across OpenMP threads; `inner(ptrs, strides, n)` runs over the innermost dim.
// Each output element is written by exactly one thread, so results never depend on thread count.
#pragma once

#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::cpu {

template <size_t N>
struct StridedPlan {
  Shape shape;                                // coalesced sizes, innermost last
  std::array<Shape, N> strides;               // in bytes, per operand
  std::array<char*, N> base;
};

template <size_t N>
StridedPlan<N> make_plan(const std::array<const Tensor*, N>& ts) {
  StridedPlan<N> p;
  const Shape& shape = ts[0]->shape();
  size_t nd = shape.size();
  Shape sizes;
  std::array<Shape, N> st;
  for (size_t d = 0; d < nd; ++d) {
    if (shape[d] == 1) continue;  // size-1 dims carry no iteration
    bool merge = !sizes.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      int64_t s = ts[k]->strides()[d] * int64_t(ts[k]->element_size());
      merge = st[k].back() == s * shape[d];
    }
    if (merge) {
      sizes.back() *= shape[d];
      for (size_t k = 0; k < N; ++k)
        st[k].back() = ts[k]->strides()[d] * int64_t(ts[k]->element_size());
    } else {
      sizes.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k)
        st[k].push_back(ts[k]->strides()[d] * int64_t(ts[k]->element_size()));
    }
  }
  if (sizes.empty()) {
    sizes.push_back(1);
    for (size_t k = 0; k < N; ++k) st[k].push_back(0);
  }
  p.shape = sizes;
  p.strides = st;
  for (size_t k = 0; k < N; ++k) p.base[k] = static_cast<char*>(ts[k]->raw_data());
  return p;
}

// inner(std::array<char*, N> ptrs, std::array<int64_t, N> byte_strides, int64_t n)
template <size_t N, class Inner>
void strided_loop(const std::array<const Tensor*, N>& ts, Inner&& inner) {
  StridedPlan<N> p = make_plan<N>(ts);
  const int64_t nd = int64_t(p.shape.size());
  const int64_t n_inner = p.shape.back();
  int64_t n_outer = 1;
  for (int64_t d = 0; d + 1 < nd; ++d) n_outer *= p.shape[size_t(d)];
  std::array<int64_t, N> inner_st;
  for (size_t k = 0; k < N; ++k) inner_st[k] = p.strides[k].back();
  // Split long inner runs into chunks so that 1-D tensors parallelise too.
  constexpr int64_t kChunk = 16384;
  const int64_t chunks_per_row = (n_inner + kChunk - 1) / kChunk;
  const int64_t total = n_outer * chunks_per_row;
  const bool parallel = n_outer * n_inner >= 32768 && total > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t job = 0; job < total; ++job) {
    int64_t row = job / chunks_per_row, c = job % chunks_per_row;
    std::array<char*, N> ptr = p.base;
    int64_t r = row;
    for (int64_t d = nd - 2; d >= 0; --d) {
      int64_t idx = r % p.shape[size_t(d)];
      r /= p.shape[size_t(d)];
      for (size_t k = 0; k < N; ++k) ptr[k] += idx * p.strides[k][size_t(d)];
    }
    int64_t start = c * kChunk, len = std::min(kChunk, n_inner - start);
    for (size_t k = 0; k < N; ++k) ptr[k] += start * inner_st[k];
    inner(ptr, inner_st, len);
  }
}

}  // namespace loom::cpu

// Fast CPU indexing kernels: index_select, index_add, gather, scatter_add (Backend.h contracts;
// spec in ref/NnRef.cpp). Every index is range-checked before any thread starts (a ValueError
// names the op, the bad index, its position and the allowed range). The scatter kernels are
// deterministic: work is split by output column range (and outer slice), and inside one job the
// source rows are added strictly in index order, so no two threads touch one output element and
// the summation order never depends on the thread count.
#include <cstring>
#include <vector>

#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {

namespace {

constexpr int64_t kColChunk = 256;  // output columns per job in the scatter kernels

void check_indices(const char* op, const int64_t* idx, int64_t count, int64_t n) {
  for (int64_t j = 0; j < count; ++j) {
    LOOM_CHECK(idx[j] >= 0 && idx[j] < n, op, ": expected index in [0, ", n, "), got ", idx[j],
               " at position ", j);
  }
}

void check_index_tensor(const char* op, const Tensor& index) {
  LOOM_CHECK(index.dtype() == DType::I64, op, ": expected index of dtype i64, got ",
             dtype_name(index.dtype()));
  LOOM_INTERNAL_ASSERT(index.is_contiguous(), op, ": expected a contiguous index");
}

// Calls fn.template operator()<T>() for the dtypes the accumulating kernels support.
template <class Fn>
void visit_accumulate(DType dt, const char* op, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    case DType::I32: return fn.template operator()<int32_t>();
    case DType::I64: return fn.template operator()<int64_t>();
    default: break;
  }
  throw ValueError(detail::str_cat(op, ": expected dtype f32, f64, i32 or i64, got ",
                                   dtype_name(dt), " on cpu"));
}

}  // namespace

void CpuBackend::index_select(const Tensor& out, const Tensor& x, const Tensor& index,
                              int64_t outer, int64_t n, int64_t inner) {
  check_index_tensor("index_select", index);
  LOOM_INTERNAL_ASSERT(out.is_contiguous() && x.is_contiguous(), "index_select: not contiguous");
  const int64_t m = index.numel();
  const int64_t* idx = index.data<int64_t>();
  check_indices("index_select", idx, m, n);
  const size_t es = x.element_size(), row_bytes = size_t(inner) * es;
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const int64_t rows = outer * m;
#pragma omp parallel for schedule(static) if (rows * inner >= kParallelMinElems && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r / m, j = r % m;
    std::memcpy(dst + size_t(r) * row_bytes, src + size_t(o * n + idx[j]) * row_bytes, row_bytes);
  }
}

void CpuBackend::index_add(const Tensor& out, const Tensor& src, const Tensor& index,
                           int64_t outer, int64_t n, int64_t inner) {
  check_index_tensor("index_add", index);
  LOOM_INTERNAL_ASSERT(out.is_contiguous() && src.is_contiguous(), "index_add: not contiguous");
  const int64_t m = index.numel();
  const int64_t* idx = index.data<int64_t>();
  check_indices("index_add", idx, m, n);
  const int64_t col_chunks = (inner + kColChunk - 1) / kColChunk, jobs = outer * col_chunks;
  visit_accumulate(out.dtype(), "index_add", [&]<class T>() {
    T* o_data = out.data<T>();
    const T* s_data = src.data<T>();
#pragma omp parallel for schedule(static) if (m * inner * outer >= kParallelMinElems && jobs > 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int64_t o = job / col_chunks, c0 = (job % col_chunks) * kColChunk;
      const int64_t c1 = std::min(inner, c0 + kColChunk);
      for (int64_t j = 0; j < m; ++j) {  // in index order: deterministic
        T* dst = o_data + (o * n + idx[j]) * inner;
        const T* s = s_data + (o * m + j) * inner;
        for (int64_t c = c0; c < c1; ++c) dst[c] += s[c];
      }
    }
  });
}

void CpuBackend::gather(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                        int64_t n, int64_t inner) {
  check_index_tensor("gather", index);
  LOOM_INTERNAL_ASSERT(out.is_contiguous() && x.is_contiguous(), "gather: not contiguous");
  const int64_t total = index.numel();
  const int64_t* idx = index.data<int64_t>();
  check_indices("gather", idx, total, n);
  const int64_t m = outer * inner == 0 ? 0 : total / (outer * inner);
  visit_dtype(x.dtype(), [&]<class T>() {
    const T* xd = x.data<T>();
    T* od = out.data<T>();
#pragma omp parallel for schedule(static) if (total >= kParallelMinElems && outer * m > 1)
    for (int64_t r = 0; r < outer * m; ++r) {
      const int64_t o = r / m;
      const int64_t* ir = idx + r * inner;
      T* orow = od + r * inner;
      for (int64_t c = 0; c < inner; ++c) orow[c] = xd[(o * n + ir[c]) * inner + c];
    }
  });
}

void CpuBackend::scatter_add(const Tensor& out, const Tensor& src, const Tensor& index,
                             int64_t outer, int64_t n, int64_t inner) {
  check_index_tensor("scatter_add", index);
  LOOM_INTERNAL_ASSERT(out.is_contiguous() && src.is_contiguous(), "scatter_add: not contiguous");
  const int64_t total = index.numel();
  const int64_t* idx = index.data<int64_t>();
  check_indices("scatter_add", idx, total, n);
  const int64_t m = outer * inner == 0 ? 0 : total / (outer * inner);
  const int64_t col_chunks = (inner + kColChunk - 1) / kColChunk, jobs = outer * col_chunks;
  visit_accumulate(out.dtype(), "scatter_add", [&]<class T>() {
    T* od = out.data<T>();
    const T* sd = src.data<T>();
#pragma omp parallel for schedule(static) if (total >= kParallelMinElems && jobs > 1)
    for (int64_t job = 0; job < jobs; ++job) {
      const int64_t o = job / col_chunks, c0 = (job % col_chunks) * kColChunk;
      const int64_t c1 = std::min(inner, c0 + kColChunk);
      for (int64_t j = 0; j < m; ++j) {  // in source-row order: deterministic
        const int64_t r = o * m + j;
        for (int64_t c = c0; c < c1; ++c) od[(o * n + idx[r * inner + c]) * inner + c] += sd[r * inner + c];
      }
    }
  });
}

}  // namespace loom::cpu

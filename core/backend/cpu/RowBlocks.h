// RowBlocks: the deterministic weight-gradient reduction shared by the CPU norm backwards (layer
// norm, RMSNorm). Rows are cut into fixed blocks of kNormRowBlock rows; the blocks are split over
// OpenMP threads and each block adds its rows' per-column terms into its own row of a (blocks, C)
// double buffer; the blocks are then summed in block order. So the result never depends on the
// thread count.
//   std::vector<double> pw(size_t(norm_row_blocks(N) * C));
//   for_each_norm_row<T>(N, C, parallel, [&](int64_t i, int64_t blk, T* tmp) { ...row i... });
//   sum_block_partials(pw, norm_row_blocks(N), C, dweight.data<T>(), parallel_columns);
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace loom::cpu {

constexpr int64_t kNormRowBlock = 32;  // rows per weight-gradient partial

inline int64_t norm_row_blocks(int64_t N) { return (N + kNormRowBlock - 1) / kNormRowBlock; }

// row(i, blk, tmp) for every row i in [0, N), blk its block; tmp is a per-thread scratch of C.
template <class T, class Row>
void for_each_norm_row(int64_t N, int64_t C, bool parallel, const Row& row) {
  const int64_t blocks = norm_row_blocks(N);
#pragma omp parallel if (parallel && blocks > 1)
  {
    std::vector<T> tmp(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk)
      for (int64_t i = blk * kNormRowBlock; i < std::min(N, (blk + 1) * kNormRowBlock); ++i)
        row(i, blk, tmp.data());
  }
}

// out[c] = the sum over blocks, in block order, of partials[blk * C + c] (columns split over
// threads: they are independent).
template <class T>
void sum_block_partials(const std::vector<double>& partials, int64_t blocks, int64_t C, T* out,
                        bool parallel) {
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) s += partials[size_t(blk * C + c)];
    out[c] = T(s);
  }
}

}  // namespace loom::cpu

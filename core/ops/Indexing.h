// Joining, splitting and indexing.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Pieces of `split_size` along dim (the last may be smaller); they are views of x.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// x.index_select(dim, index): index (m) I64.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j][k] = x[i][index[i][j][k]][k] for dim=1 (PyTorch gather semantics); index I64 with
// the same number of dims as x.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace loom

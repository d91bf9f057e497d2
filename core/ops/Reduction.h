// Reductions over dims (negative dims count from the end). Summation order is fixed, so results
// do not depend on the thread count.
//   Tensor m = loom::mean(x, {-1}, /*keepdim=*/true);
#pragma once

#include <vector>

#include "core/tensor/Tensor.h"

namespace loom {

Tensor sum(const Tensor& x);  // all elements -> 0-dim
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Max over one dim; the gradient goes to the (first) arg max. indices (I64) optional out-param.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false, Tensor* indices = nullptr);
Tensor max(const Tensor& x);  // over all elements
Tensor min(const Tensor& x, int64_t dim, bool keepdim = false, Tensor* indices = nullptr);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

// Sums x down to `shape` (the reverse of broadcasting): the backward of expand.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace loom

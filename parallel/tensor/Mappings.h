// Tensor-parallel communication as autograd functions, paired Megatron's way (STYLE.md section 3):
// every forward collective has its backward twin, so the TP layers only compose these four and
// never call a communicator themselves.
//   copy_to_tp      identity                          | all-reduce (sum) of the gradient
//   reduce_from_tp  all-reduce (sum)                  | identity
//   scatter_to_tp   keep own slice of the last dim    | all-gather the gradient (last dim)
//   gather_from_tp  all-gather along the last dim     | keep own slice of the gradient
// NB: the communicator is held by reference in the autograd graph: it must outlive backward.
//   Tensor h = tp::copy_to_tp(x, grid.tp_group());  // enter a TP region
#pragma once

#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::tp {

// x (...) -> x; backward: all-reduce(dy) over `tp`.
Tensor copy_to_tp(const Tensor& x, Communicator& tp);
// x (...) partial sums -> their sum over `tp` (a new tensor, or x itself at tp = 1); backward:
// identity.
Tensor reduce_from_tp(const Tensor& x, Communicator& tp);
// x (..., n) -> this rank's slice (..., n/tp); n % tp == 0. Backward: all-gather along the last
// dim.
Tensor scatter_to_tp(const Tensor& x, Communicator& tp);
// x (..., m) -> concatenation over ranks (..., m*tp) in rank order. Backward: own slice of dy.
Tensor gather_from_tp(const Tensor& x, Communicator& tp);

// Plain (non-autograd) helpers the functions above are built from; also useful in tests.
// Own slice [rank*n/size, (rank+1)*n/size) of dim `dim`, as a contiguous copy.
Tensor slice_for_rank(const Tensor& x, int64_t dim, int rank, int size);
// All-gather x (..., m) along its last dim -> (..., m*size), detached.
Tensor all_gather_last_dim(const Tensor& x, Communicator& tp);

}  // namespace loom::tp

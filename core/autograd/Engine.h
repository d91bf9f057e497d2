// The backward engine: counts dependencies from the roots, then runs nodes whose inputs are all
// ready: a parameter's gradient accumulator as soon as it is ready (its buffer never waits for the
// rest of backward), otherwise later-created nodes first (so parameter gradients of the last
// layers become final early, which lets the data-parallel reducer overlap communication with the
// rest of backward).
#pragma once

#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::autograd {

// roots[i] receives gradient grads[i]. Without retain_graph, saved tensors are freed as nodes run
// and a second backward through the same graph throws.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

}  // namespace loom::autograd

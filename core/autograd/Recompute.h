// recompute(fn, inputs): activation recomputation (gradient checkpointing). Forward runs
// fn(inputs) without recording its graph, so none of fn's intermediate activations are kept, only
// the inputs. Backward reruns fn on the saved inputs with recording on, backpropagates the
// incoming gradient through that fresh graph (parameters fn uses receive their gradients then,
// their post-accumulate hooks fire as usual) and returns the inputs' gradients. fn must compute
// the same values when rerun: deterministic kernels, dropout keyed by a state fn captures.
//   Tensor y = autograd::recompute([&](const std::vector<Tensor>& in) { return block(in[0]); }, {x});
#pragma once

#include <functional>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::autograd {

using RecomputeFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// One output of fn; inputs may be undefined or need no gradient (then they get none). Without
// grad mode this is simply fn(inputs).
Tensor recompute(RecomputeFn fn, const std::vector<Tensor>& inputs);

}  // namespace loom::autograd

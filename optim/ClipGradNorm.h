// Global gradient-norm clipping: total = sqrt(sum over params of ||grad||^2), each squared norm
// accumulated in f64 in the order the parameters are given (so the result does not depend on
// threads). If total > max_norm every gradient is scaled by max_norm / (total + 1e-6), as
// torch.nn.utils.clip_grad_norm_ does. Parameters without .grad are skipped.
//   double norm = clip_grad_norm(model.parameters(), 1.0);   // logged as grad_norm
#pragma once

#include <vector>

#include "core/tensor/Tensor.h"
#include "optim/Optimizer.h"

namespace loom::optim {

// Sum over params of ||grad||^2, each in f64, added in parameter order (parameters without .grad
// count 0). What grad_norm() takes the root of, and what a sharded model sums over its ranks.
double grad_sq_sum(const std::vector<Tensor>& params);
// Multiplies every defined gradient by coef in place.
void scale_grads(const std::vector<Tensor>& params, double coef);
// The clip coefficient torch.nn.utils.clip_grad_norm_ applies for a total norm: max_norm /
// (total + 1e-6) when that is below 1, else 1 (also for a non-finite total: nothing is scaled).
double clip_coefficient(double total, double max_norm);
// The norm without clipping.
double grad_norm(const std::vector<Tensor>& params);
// Returns the total norm before clipping (may be inf/nan; then nothing is scaled).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm(const std::vector<NamedParam>& params, double max_norm);

}  // namespace loom::optim

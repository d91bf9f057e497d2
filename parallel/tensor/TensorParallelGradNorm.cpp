// Tensor-parallel global gradient norm and clipping (TensorParallelGradNorm.h). Squared norms are
// accumulated in f64 on the gradients' device and moved to the host once for the all-reduce.
#include "parallel/tensor/TensorParallelGradNorm.h"

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"

namespace loom::tp {

namespace {

// Adds ||grad||^2 of each parameter (in f64) to `acc`.
void add_squares(double& acc, const std::vector<Tensor>& params) {
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined() || g.numel() == 0) continue;
    acc += sum(square(g.to(DType::F64))).item();
  }
}

}  // namespace

double grad_norm(const std::vector<Tensor>& sharded, const std::vector<Tensor>& replicated,
                 int tp_rank, Communicator& group) {
  LOOM_CHECK(tp_rank >= 0, "tp::grad_norm: expected tp_rank >= 0, got ", tp_rank);
  autograd::NoGradGuard guard;
  double local = 0.0;
  add_squares(local, sharded);
  if (tp_rank == 0) add_squares(local, replicated);
  Tensor total = Tensor::full({1}, local, DType::F64);
  group.all_reduce(total);
  return std::sqrt(total.to_vector<double>()[0]);
}

double clip_grad_norm(const std::vector<Tensor>& sharded, const std::vector<Tensor>& replicated,
                      int tp_rank, Communicator& group, double max_norm) {
  LOOM_CHECK(max_norm > 0.0, "tp::clip_grad_norm: expected max_norm > 0, got ", max_norm);
  const double norm = grad_norm(sharded, replicated, tp_rank, group);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double scale = max_norm / (norm + 1e-6);
  autograd::NoGradGuard guard;
  for (const auto* list : {&sharded, &replicated}) {
    for (const Tensor& p : *list) {
      Tensor g = p.grad();
      if (g.defined()) g.mul_(scale);
    }
  }
  return norm;
}

}  // namespace loom::tp

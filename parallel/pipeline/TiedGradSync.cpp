// Gradient all-reduce of the tied embedding / LM head between the first and last pipeline stage
// (see TiedGradSync.h). NB: the sum runs in group-rank order (first stage's part + last stage's
// part), which is a different summation order from a single process that accumulates head and
// embedding gradients per micro-batch: equal up to rounding, not bitwise (TESTPLAN R-3).
#include "parallel/pipeline/TiedGradSync.h"

#include "core/util/Check.h"

namespace loom::pipeline {

TiedGradSync::TiedGradSync(Communicator& pp) {
  const int last = pp.size() - 1;
  holds_ = pp.rank() == 0 || pp.rank() == last;
  if (pp.size() == 1) return;
  ends_ = pp.split(holds_ ? 0 : -1, pp.rank(), pp.name() + ".tied");
}

void TiedGradSync::all_reduce(const Tensor& weight) const {
  if (!ends_) return;
  LOOM_CHECK(weight.defined(), "TiedGradSync.all_reduce: expected the tied weight on the first ",
             "and last stage, got none");
  // A copy the loss did not use this step (the LM head of a reward model) contributes zeros.
  if (!weight.grad().defined())
    weight.set_grad(Tensor::zeros(weight.shape(), weight.dtype(), weight.device()));
  Tensor g = weight.grad();
  LOOM_CHECK(g.is_contiguous(), "TiedGradSync.all_reduce: expected a contiguous gradient, got ",
             "strides ", g.strides());
  ends_->all_reduce(g);
}

}  // namespace loom::pipeline

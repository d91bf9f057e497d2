// TiedGradSync: keeps a weight that lives on both the first and the last pipeline stage (the tied
// token embedding / LM head) identical. Each of the two stages accumulates only its own part of
// the gradient (embedding lookup on the first stage, LM head on the last); after the schedule's
// backward, all_reduce() sums the two parts so both copies hold the full gradient and, given the
// same optimizer, stay bitwise equal after every step. Middle stages and pp == 1 do nothing.
//   TiedGradSync tied(grid.pp_group());              // collective over the pipeline group
//   run_pipeline(...);  tied.all_reduce(stage.tied_weight());  optimizer.step();
#pragma once

#include <memory>

#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::pipeline {

class TiedGradSync {
 public:
  explicit TiedGradSync(Communicator& pp);
  // True on the stages that hold a copy of the tied weight (first and last).
  bool holds_weight() const { return holds_; }
  // Sums weight.grad() over the first and last stage in place (a no-op elsewhere and at pp 1); a
  // copy without a gradient (unused by this step's loss) takes part with zeros.
  void all_reduce(const Tensor& weight) const;

 private:
  std::shared_ptr<Communicator> ends_;  // {first, last} stage; null when pp == 1 or a middle stage
  bool holds_ = false;
};

}  // namespace loom::pipeline

// PipelineStage: what a pipeline schedule drives on one rank. A stage owns a contiguous slice of
// the model's layers; the schedule feeds it one micro-batch at a time and moves activations and
// gradients between neighbouring stages (P2P.h). The first stage reads the token ids, the last
// stage returns the micro-batch loss; every other stage maps an activation to an activation.
//   class MyStage : public PipelineStage {
//     Tensor forward(const Tensor& x, const MicroBatch& mb) override { return block(x); }
//   };
#pragma once

#include <functional>

#include "core/tensor/Tensor.h"

namespace loom::pipeline {

// One micro-batch of the global batch. Every rank may hold all of them: the first stage reads
// ids, the last stage reads targets, middle stages read neither.
struct MicroBatch {
  Tensor ids;      // (b,T) I64
  Tensor targets;  // (b,T) I64
  // Position of this micro-batch in its optimizer step (keys its dropout masks); -1 when the
  // caller does not say.
  int64_t index = -1;
  // The last stage's loss of this micro-batch from the model's final hidden states h (b,T,C);
  // empty: the model's default (language-model cross entropy against targets). Lets a stage
  // (SFT, reward, DPO, PPO) train through the same schedules.
  std::function<Tensor(const Tensor& h)> objective;
};

class PipelineStage {
 public:
  virtual ~PipelineStage() = default;
  // x: the activation received from the previous stage (a fresh leaf that requires grad), or
  // undefined on the first stage. Returns the activation for the next stage, or on the last
  // stage the micro-batch's mean loss (a scalar with autograd history).
  virtual Tensor forward(const Tensor& x, const MicroBatch& mb) = 0;
};

}  // namespace loom::pipeline

// MemoryPlan: each rank's peak memory for a run config, worked out from the model shape, the
// layout and the batch without allocating anything (what `loom plan` prints). The parts follow
// what Loom keeps alive, in bytes: parameters, gradients (freed after each optimizer step),
// optimizer state, the activations backward needs for the micro-batches a pipeline stage holds at
// once (per the recompute mode), the largest transient (the fused LM head's weight gradient and
// logits chunks, the embedding's dense gradient), communication buffers (DP buckets, ZeRO-1's flat
// parameters) and the process itself. Peak = the larger of the end of a forward pass and the end
// of backward. Calibrated against `bench_memory` (docs/PERFORMANCE.md).
//   for (const RankMemory& r : plan_memory(cfg)) std::printf("%s\n", r.str().c_str());
#pragma once

#include <string>
#include <vector>

#include "config/Config.pb.h"

namespace loom::train {

// One pipeline stage's ranks (the TP ranks of a stage hold equal shares), in MiB.
struct RankMemory {
  int stage = 0;
  double params = 0, grads = 0, optimizer = 0;  // persistent state
  double activations = 0;  // saved for backward at the forward pass's end, all micro-batches held
  int64_t micro_batches_held = 0;
  double transient = 0;  // the largest short-lived buffer on top (head or embedding gradient)
  double comm = 0;       // DP bucket buffers, ZeRO-1's gathered parameters, pipeline buffers
  double other_models = 0;  // frozen reference / critic / reward model of the RLHF stages
  double process = 0;       // code, libraries, heaps (not tensors)
  double peak = 0;
  std::string str() const;
};

// One entry per pipeline stage; cfg must be resolved (defaults applied and validated).
std::vector<RankMemory> plan_memory(const config::RunConfig& cfg);

}  // namespace loom::train

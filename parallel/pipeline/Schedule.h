// Pipeline schedules: GPipe (all forwards, then all backwards) and 1F1B (PipeDream-flush: a
// warm-up of pp-stage-1 forwards, then one forward / one backward in lock step, then a cool-down
// of the remaining backwards). Both run M micro-batches through this rank's stage, compute the
// loss on the last stage as mean over micro-batches of each micro-batch's loss (each scaled by
// 1/M before its backward, exactly as single-process gradient accumulation does), and leave the
// parameter gradients accumulated over all M micro-batches (backwards run in micro-batch order,
// so the accumulation order equals the single-process one). No optimizer step, no grad zeroing.
// PipelineHooks::before_backward(m) runs right before micro-batch m's backward on this stage
// (e.g. to arm a data-parallel gradient reducer for the last one).
//   PipelineP2P p2p(grid.pp_group(), {b, T, C}, DType::F32);
//   PipelineResult r = run_pipeline(ScheduleKind::OneFOneB, stage, p2p, micro_batches);
//   r.loss;  // the same on every stage (broadcast from the last)
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "parallel/pipeline/P2P.h"
#include "parallel/pipeline/PipelineStage.h"

namespace loom::pipeline {

enum class ScheduleKind { GPipe, OneFOneB };
const char* schedule_name(ScheduleKind kind);  // "gpipe", "1f1b"

struct PipelineResult {
  // sum over micro-batches m (in order, in f64) of float(loss_m * (1/M)); broadcast from the
  // last stage, so every stage returns the same value.
  double loss = 0.0;
  // Most micro-batches whose forward had run and whose backward had not, at any moment on this
  // stage: the activation memory the schedule holds. GPipe: M. 1F1B: min(M, pp - stage).
  int64_t max_live_micro_batches = 0;
  int64_t forwards = 0, backwards = 0;  // steps run on this stage (each M)
};

// Optional callbacks into a schedule; empty ones are not called.
struct PipelineHooks {
  // Called on this stage right before the backward of micro-batch `mb` (once per micro-batch, in
  // backward order, which is 0, 1, ..., M-1 under both schedules).
  std::function<void(int64_t mb)> before_backward;
  // Multiplies each micro-batch's loss before its backward (loss scaling); the returned loss is
  // unscaled.
  double backward_scale = 1.0;
};

// Runs one global batch through the pipeline. Collective over p2p.group(): every stage calls it
// with the same kind and the same number of micro-batches.
PipelineResult run_pipeline(ScheduleKind kind, PipelineStage& stage, PipelineP2P& p2p,
                            const std::vector<MicroBatch>& micro_batches,
                            const PipelineHooks& hooks = {});

// Forward-only evaluation of the micro-batches (no autograd history, activations flow forward
// only; put the model in eval mode first if it has dropout). Returns the mean over micro-batches
// of each micro-batch's loss, summed in f64 on the last stage and broadcast over p2p.group(), so
// every stage returns the same value. Collective like run_pipeline; works at pp == 1.
double run_pipeline_eval(PipelineStage& stage, PipelineP2P& p2p,
                         const std::vector<MicroBatch>& micro_batches);

// How many forwards stage `stage` of `pp` runs before its first backward under 1F1B.
int64_t warmup_forwards(int stage, int pp, int64_t num_micro_batches);

}  // namespace loom::pipeline

// Training-step benchmark behind `loom bench`: builds a GPT (a preset such as "gpt2-124m", or
// "tiny"), AdamW, and fixed-seed random token batches, then times whole training steps (forward,
// backward, clip_grad_norm 1.0, AdamW step, zero_grad) after a warm-up and reports one JSON line.
// bench/pytorch_train_gpt2.py prints the same fields for the same step in PyTorch.
//   std::puts(run_train_bench({.model = "gpt2-124m", .batch = 4, .seq = 64}).c_str());
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor/Device.h"

namespace loom::train {

struct BenchOptions {
  std::string model = "gpt2-124m";  // a GPTConfig preset name, or "tiny"
  int64_t batch = 4, seq = 64, steps = 10, warmup = 2;
  int threads = 0;  // 0 = default (LOOM_NUM_THREADS / OMP_NUM_THREADS / all cores)
  Device device = Device::cpu();
  // OpenBLAS kernel set for CPU runs: "" keeps the current one (OPENBLAS_CORETYPE or detection),
  // "auto" re-detects the CPU, a name such as "SkylakeX" forces it (cpu::set_blas_kernels).
  std::string blas;
  // "f32" (default) or "bf16": the step's forward runs under AutocastGuard(BF16) (CUDA only;
  // parameters, gradients and AdamW stay f32).
  std::string dtype = "f32";
};

// Runs the benchmark; returns one JSON object (no trailing newline) with model, params, batch,
// seq, threads, device, dtype, blas (CPU), steps, warmup, ms_per_step_median, ms_per_step_min,
// ms_per_step_max, tokens_per_s (from the median), final_loss, peak_rss_mb and, on CUDA,
// peak_device_mb.
// Throws ValueError for bad options (unknown model, seq > block_size, non-positive sizes).
std::string run_train_bench(const BenchOptions& options);

}  // namespace loom::train

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
  // A GPTConfig preset name (gpt2-124m, llama-3.2-1b, qwen2.5-0.5b, ...), "tiny" (a 4-layer
  // GPT-2), "tiny-llama" (its Llama-architecture twin with GQA) or "llama-124m" (GPT-2 124M's
  // shape with the Llama architecture: RMSNorm, RoPE, SwiGLU of 2048, no biases).
  std::string model = "gpt2-124m";
  int64_t batch = 4, seq = 64, steps = 10, warmup = 2;
  // 0 = default (LOOM_NUM_THREADS / OMP_NUM_THREADS / all cores); at most usable_cores(): more
  // threads than cores only oversubscribe them (and OpenBLAS's per-thread buffers can exhaust a
  // limited address space).
  int threads = 0;
  Device device = Device::cpu();
  // OpenBLAS kernel set for CPU runs: "" keeps the current one (OPENBLAS_CORETYPE or detection),
  // "auto" re-detects the CPU, a name such as "SkylakeX" forces it (cpu::set_blas_kernels).
  std::string blas;
  // "f32" (default) or "bf16": the step's forward runs under AutocastGuard(BF16) (CUDA only: the
  // CPU kernels are f32, so bf16 on the CPU is refused rather than run as f32; parameters,
  // gradients and AdamW stay f32).
  std::string dtype = "f32";
};

// Runs the benchmark; returns one JSON object (no trailing newline) with model, params, batch,
// seq, threads, device, dtype, blas (CPU), steps, warmup, ms_per_step_median, ms_per_step_min,
// ms_per_step_max, tokens_per_s (from the median), final_loss, peak_rss_mb and, on CUDA,
// peak_device_mb.
// Throws ValueError for bad options (see check_bench_options).
std::string run_train_bench(const BenchOptions& options);

// ValueError for options run_train_bench refuses: unknown model, seq > block_size, non-positive
// sizes, threads above usable_cores(), a dtype other than f32/bf16, bf16 on the CPU.
void check_bench_options(const BenchOptions& options);

// The cores this process may run on (its CPU affinity mask; at least 1).
int usable_cores();

}  // namespace loom::train

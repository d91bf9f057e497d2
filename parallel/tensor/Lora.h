// LoRA (Hu et al. 2021): a low-rank adapter beside a frozen linear layer, y = x W^T + b +
// (alpha/r) dropout(x) A^T B^T with A (r, in) drawn N(0, init_std) and B (out, r) zero, so a fresh
// adapter leaves the layer unchanged. The linear layers (ParallelLinear.h, models::Linear) own
// their adapter's parameters ("<layer>.lora_A", "<layer>.lora_B"); the functions here are the
// adapter's forward for each way the base weight is split over the TP ranks, built from the
// Mappings.h functions so their backward comes from those:
//   column-parallel W (out/tp rows): B split by rows like W, A replicated (owned by TP rank 0);
//   row-parallel W (in/tp columns):  A split by columns like W, B replicated (owned by rank 0).
// Dropout masks come from the replicated stream over the logical input, so every layout draws the
// same mask (a row-parallel rank uses its columns of it).
#pragma once

#include <cstdint>

#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::tp {

struct LoraOptions {
  int64_t rank = 8;        // r >= 1
  double alpha = 16.0;     // the update is scaled by alpha / r
  double dropout = 0.0;    // on the adapter's input, in [0, 1)
  double init_std = 0.02;  // A ~ N(0, init_std); B = 0
  double scale() const { return alpha / double(rank); }
};

// Throws ValueError naming the bad field unless rank >= 1, alpha > 0, 0 <= dropout < 1.
void check_lora_options(const LoraOptions& o);

// The adapter's dropout generator for a forward: `gen` when training with dropout > 0, else null.
inline Generator* lora_dropout_gen(const LoraOptions& o, Generator* gen, bool training) {
  return training && o.dropout > 0.0 ? gen : nullptr;
}

// Column-parallel base: x (..., in) replicated, A (r, in) replicated, B (out/tp, r) -> this rank's
// (..., out/tp) update. A's gradient is summed over the ranks (copy_to_tp), so each holds it whole.
Tensor lora_column(const Tensor& x, const Tensor& A, const Tensor& B, const LoraOptions& o,
                   Generator* gen, Communicator& tp);
// Row-parallel base: x (..., in/tp) this rank's columns, A (r, in/tp), B (out, r) replicated ->
// the whole (..., out) update, equal on every rank.
Tensor lora_row(const Tensor& x, const Tensor& A, const Tensor& B, const LoraOptions& o,
                Generator* gen, Communicator& tp);
// Replicated base: x (..., in), A (r, in), B (out, r) -> (..., out).
Tensor lora_whole(const Tensor& x, const Tensor& A, const Tensor& B, const LoraOptions& o,
                  Generator* gen);

// The merged weight W + (alpha/r) B A of logical (whole) tensors: W (out, in), A (r, in),
// B (out, r). No autograd.
Tensor lora_merge(const Tensor& W, const Tensor& A, const Tensor& B, const LoraOptions& o);

}  // namespace loom::tp

// Megatron-style tensor-parallel linear layers, built only from the Mappings.h functions, as
// nn::Modules whose parameters are this rank's pieces of the logical (single-process) weights.
// ColumnParallelLinear splits the output features over the TP ranks (weight rows), so each rank
// computes a slice of y; RowParallelLinear splits the input features (weight columns), so each
// rank computes a partial sum of y that reduce_from_tp adds up. Column then Row (MLP up/down,
// attention qkv/proj) needs exactly one all-reduce forward and one backward. At tp = 1 both are a
// plain linear layer (the mappings are identities).
//   ColumnParallelLinear fc(C, 4 * C, tp);  RowParallelLinear proj(4 * C, C, tp);
//   model.init_parameters(seed);                                   // the same logical weights
//   Tensor y = proj.forward(gelu(fc.forward(x)));                  // x, y (B,T,C) on every rank
// add_lora(options) gives a layer a LoRA adapter (Lora.h): parameters lora_A, lora_B beside its
// weight, split the way Lora.h says, added to every forward; `gen` (the replicated dropout stream)
// draws the adapter's dropout mask when the layer is training.
// NB: layers keep a reference to the communicator; it must outlive the layer and its graphs.
#pragma once

#include <cstdint>

#include "core/nn/Module.h"
#include "parallel/comm/Communicator.h"
#include "parallel/tensor/Lora.h"

namespace loom::tp {

struct LinearOptions {
  bool bias = true;
  double init_std = 0.02;  // weight ~ N(0, init_std); bias = 0
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

class ColumnParallelLinear : public nn::Module {
 public:
  // Logical weight (out, in), bias (out). The rows are `stacked` equal blocks (3 for a fused
  // [q; k; v] projection), each split evenly over the ranks, so rank r holds [q_r; k_r; v_r].
  // gather_output: forward returns the full (..., out) on every rank instead of the local slice.
  ColumnParallelLinear(int64_t in, int64_t out, Communicator& tp, LinearOptions o = {},
                       int64_t stacked = 1, bool gather_output = false);
  // x (..., in), replicated -> (..., out/tp), or (..., out) with gather_output.
  Tensor forward(const Tensor& x, Generator* gen = nullptr) const;
  // Adds lora_A (r, in) replicated (owned by TP rank 0) and lora_B (out/tp, r) split like weight.
  void add_lora(const LoraOptions& o);
  const Tensor& weight() const { return weight_; }  // (out/tp, in)
  const Tensor& bias() const { return bias_; }      // (out/tp) or undefined
  const Tensor& lora_A() const { return lora_A_; }  // undefined without an adapter
  const Tensor& lora_B() const { return lora_B_; }

 private:
  Communicator& tp_;
  bool gather_output_;
  int64_t stacked_;
  Tensor weight_, bias_;
  LoraOptions lora_;
  Tensor lora_A_, lora_B_;
};

class RowParallelLinear : public nn::Module {
 public:
  // Logical weight (out, in), split along in; bias (out) replicated on every rank (owned by TP
  // rank 0), added once after the reduction. input_is_parallel: forward takes the local
  // (..., in/tp) slice (a ColumnParallelLinear's output); otherwise (..., in), scattered here.
  RowParallelLinear(int64_t in, int64_t out, Communicator& tp, LinearOptions o = {},
                    bool input_is_parallel = true);
  // x (..., in/tp) (or (..., in)) -> (..., out), equal on every rank.
  Tensor forward(const Tensor& x, Generator* gen = nullptr) const;
  // forward(gelu(a)) for a parallel input a, keeping only a for backward (core gelu_linear:
  // gelu(a) is recomputed there). Same values and gradients.
  Tensor forward_gelu(const Tensor& a, Generator* gen = nullptr) const;
  // forward(swiglu(a)) for a parallel input a (..., 2 in/tp) = [gate | up] (a stacked
  // ColumnParallelLinear's output), keeping only a for backward (core swiglu_linear).
  Tensor forward_swiglu(const Tensor& a, Generator* gen = nullptr) const;
  // Adds lora_A (r, in/tp) split like weight and lora_B (out, r) replicated (owned by rank 0).
  void add_lora(const LoraOptions& o);
  const Tensor& weight() const { return weight_; }  // (out, in/tp)
  const Tensor& bias() const { return bias_; }      // (out) or undefined
  const Tensor& lora_A() const { return lora_A_; }  // undefined without an adapter
  const Tensor& lora_B() const { return lora_B_; }

 private:
  // y plus the adapter's update of the parallel input xl (the identity without an adapter).
  Tensor plus_lora(const Tensor& y, const Tensor& xl, Generator* gen) const;

  Communicator& tp_;
  bool input_is_parallel_;
  Tensor weight_, bias_;
  LoraOptions lora_;
  Tensor lora_A_, lora_B_;
};

}  // namespace loom::tp

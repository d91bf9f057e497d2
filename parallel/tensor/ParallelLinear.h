// Megatron-style tensor-parallel linear layers, built only from the Mappings.h functions.
// ColumnParallelLinear splits the output features over the TP ranks (weight rows), so each rank
// computes a slice of y; RowParallelLinear splits the input features (weight columns), so each
// rank computes a partial sum of y that reduce_from_tp adds up. Column then Row (MLP up/down,
// attention qkv/proj) needs exactly one all-reduce forward and one backward.
//   ColumnParallelLinear fc(C, 4 * C, tp);  RowParallelLinear proj(4 * C, C, tp);
//   fc.load_full(w_fc, b_fc);  proj.load_full(w_proj, b_proj);   // TP=1 weights -> own shards
//   Tensor y = proj.forward(gelu(fc.forward(x)));                  // x, y (B,T,C) on every rank
// NB: layers keep a reference to the communicator; it must outlive the layer and its graphs.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"
#include "parallel/comm/Communicator.h"

namespace loom::tp {

// Rows of `full` (out, ...) that rank `rank` of `size` holds when the rows are `stacked` equal
// blocks each split over the ranks (stacked = 3 for a fused [q; k; v] weight, whose rank slice is
// [q_r; k_r; v_r]). Contiguous copy, no autograd.
Tensor shard_rows(const Tensor& full, int rank, int size, int64_t stacked = 1);

class ColumnParallelLinear {
 public:
  // weight (out/tp, in), bias (out/tp) zero-initialised, trainable. out % tp == 0.
  // gather_output: forward returns the full (..., out) on every rank instead of the local slice.
  ColumnParallelLinear(int64_t in, int64_t out, Communicator& tp, bool bias = true,
                       bool gather_output = false, DType dtype = DType::F32,
                       Device device = Device::cpu());
  // x (..., in), replicated -> (..., out/tp), or (..., out) with gather_output.
  Tensor forward(const Tensor& x) const;
  // Copies this rank's rows of the full TP=1 weight (out, in) and bias (out) (see shard_rows).
  void load_full(const Tensor& weight, const Tensor& bias = Tensor(), int64_t stacked = 1);
  const Tensor& weight() const { return weight_; }  // (out/tp, in)
  const Tensor& bias() const { return bias_; }      // (out/tp) or undefined
  std::vector<Tensor> parameters() const;
  // Split for tp::grad_norm: rank-distinct slices vs tensors equal on every TP rank.
  std::vector<Tensor> sharded_parameters() const { return parameters(); }  // weight, bias
  std::vector<Tensor> replicated_parameters() const { return {}; }

 private:
  Communicator& tp_;
  bool gather_output_;
  Tensor weight_, bias_;
};

class RowParallelLinear {
 public:
  // weight (out, in/tp) zero-initialised; bias (out) replicated on every rank, added once after
  // the reduction. in % tp == 0. input_is_parallel: forward takes the local (..., in/tp) slice
  // (the output of a ColumnParallelLinear); otherwise it takes (..., in) and scatters it.
  RowParallelLinear(int64_t in, int64_t out, Communicator& tp, bool bias = true,
                    bool input_is_parallel = true, DType dtype = DType::F32,
                    Device device = Device::cpu());
  // x (..., in/tp) (or (..., in)) -> (..., out), equal on every rank.
  Tensor forward(const Tensor& x) const;
  // Copies this rank's columns of the full TP=1 weight (out, in) and the whole bias (out).
  void load_full(const Tensor& weight, const Tensor& bias = Tensor());
  const Tensor& weight() const { return weight_; }  // (out, in/tp)
  const Tensor& bias() const { return bias_; }      // (out) or undefined
  std::vector<Tensor> parameters() const;
  std::vector<Tensor> sharded_parameters() const { return {weight_}; }
  // The bias is equal on every TP rank (its gradient too).
  std::vector<Tensor> replicated_parameters() const;

 private:
  Communicator& tp_;
  bool input_is_parallel_;
  Tensor weight_, bias_;
};

}  // namespace loom::tp

// The tensor-parallel GPT-2 block and its two halves (models/GPT.h semantics), composed from the
// column/row-parallel layers: ParallelMLP (fc C->4C column-parallel, GELU on the local slice, proj
// 4C->C row-parallel) and ParallelSelfAttention (qkv C->3C column-parallel with this rank's heads,
// causal attention over n_head/tp local heads, proj row-parallel). One all-reduce forward and one
// backward each. Dropout: attention probabilities are inside the TP region (rng.tensor_parallel()),
// the residual dropout after the row-parallel reduce is outside it (rng.replicated()).
//   ParallelSelfAttention attn(C, H, tp, /*dropout=*/0.1);  attn.load_full(w_qkv, b_qkv, w_p, b_p);
//   Tensor y = attn.forward(ln_1(x), rng, /*training=*/true);   // x, y (B,T,C) on every TP rank
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/tensor/ParallelLinear.h"
#include "parallel/tensor/TensorParallelRng.h"

namespace loom::tp {

class ParallelMLP {
 public:
  ParallelMLP(int64_t C, Communicator& tp, double dropout = 0.0, bool bias = true,
              DType dtype = DType::F32, Device device = Device::cpu());
  Tensor forward(const Tensor& x, TensorParallelRng& rng, bool training) const;  // (B,T,C)
  // TP=1 weights: fc (4C, C) + (4C), proj (C, 4C) + (C).
  void load_full(const Tensor& fc_w, const Tensor& fc_b, const Tensor& proj_w,
                 const Tensor& proj_b);
  ColumnParallelLinear& fc() { return fc_; }
  RowParallelLinear& proj() { return proj_; }
  std::vector<Tensor> parameters() const;
  // Split for tp::grad_norm: rank-distinct slices vs tensors equal on every TP rank.
  std::vector<Tensor> sharded_parameters() const;
  std::vector<Tensor> replicated_parameters() const;

 private:
  double dropout_;
  ColumnParallelLinear fc_;
  RowParallelLinear proj_;
};

class ParallelSelfAttention {
 public:
  // n_head % tp == 0 and C % n_head == 0.
  ParallelSelfAttention(int64_t C, int64_t n_head, Communicator& tp, double dropout = 0.0,
                        bool bias = true, DType dtype = DType::F32, Device device = Device::cpu());
  Tensor forward(const Tensor& x, TensorParallelRng& rng, bool training) const;  // (B,T,C)
  // TP=1 weights: qkv (3C, C) + (3C) stacked [q; k; v], proj (C, C) + (C).
  void load_full(const Tensor& qkv_w, const Tensor& qkv_b, const Tensor& proj_w,
                 const Tensor& proj_b);
  ColumnParallelLinear& qkv() { return qkv_; }
  RowParallelLinear& proj() { return proj_; }
  int64_t local_heads() const { return local_heads_; }
  std::vector<Tensor> parameters() const;
  // Split for tp::grad_norm: rank-distinct slices vs tensors equal on every TP rank.
  std::vector<Tensor> sharded_parameters() const;
  std::vector<Tensor> replicated_parameters() const;

 private:
  int64_t local_heads_;
  double dropout_;
  ColumnParallelLinear qkv_;
  RowParallelLinear proj_;
};

// Pre-LN GPT-2 block (models/GPT.h Block): x + attn(ln_1(x)), then x + mlp(ln_2(x)). The layer
// norms are replicated on every TP rank; attention and MLP are the TP halves above.
class ParallelBlock {
 public:
  ParallelBlock(int64_t C, int64_t n_head, Communicator& tp, double dropout = 0.0, bool bias = true,
                DType dtype = DType::F32, Device device = Device::cpu());
  Tensor forward(const Tensor& x, TensorParallelRng& rng, bool training) const;  // (B,T,C)
  // TP=1 layer-norm weights (C) (biases undefined when !bias); attention and MLP load separately.
  void load_full_norms(const Tensor& ln1_w, const Tensor& ln1_b, const Tensor& ln2_w,
                       const Tensor& ln2_b);
  ParallelSelfAttention& attn() { return attn_; }
  ParallelMLP& mlp() { return mlp_; }
  const Tensor& ln1_weight() const { return ln1_w_; }
  const Tensor& ln1_bias() const { return ln1_b_; }
  const Tensor& ln2_weight() const { return ln2_w_; }
  const Tensor& ln2_bias() const { return ln2_b_; }
  std::vector<Tensor> parameters() const;
  std::vector<Tensor> sharded_parameters() const;
  std::vector<Tensor> replicated_parameters() const;

 private:
  Tensor ln1_w_, ln1_b_, ln2_w_, ln2_b_;
  ParallelSelfAttention attn_;
  ParallelMLP mlp_;
};

}  // namespace loom::tp

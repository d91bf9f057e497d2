// Block: one pre-norm transformer block of the GPT model (GPT.h), as one tensor-parallel rank's
// part: x + attn(norm_1(x)), then h + mlp(norm_2(h)). The config decides its architecture:
// LayerNorm or RMSNorm; learned positions (added before the blocks) or rotary embeddings applied
// to q and k here; GELU MLP (fc, proj) or SwiGLU (fc = [gate; up] fused, proj = down); every head
// with its own k/v (one fused projection attn.qkv = [q; k; v], GPT-2's) or grouped-query heads
// (attn.q, and attn.kv = [k; v]). Parameter names (logical shapes, Linear weights (out, in)):
//   ln_1.{weight,bias}  attn.qkv | attn.q + attn.kv  attn.proj  ln_2  mlp.fc  mlp.proj
// Tensor parallelism: q heads, MLP columns (gate and up each split, so a rank's fc rows are
// [gate_r; up_r]) and the row-parallel proj inputs are split over the TP ranks. The kv heads are
// split when n_kv_head % tp == 0; when tp > n_kv_head every rank holds attn.kv whole (replicated,
// owned by TP rank 0), computes all kv heads and uses the one its query heads read; copy_to_tp on
// that output sums the ranks' gradients, so each holds the full gradient of the shared weight.
//   Block b(config, tp);  Tensor y = b.forward(x, rng, Recompute::None, rope);  // x, y (B,T,C)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/nn/Module.h"
#include "models/GPTConfig.h"
#include "models/KVCache.h"
#include "models/Layers.h"
#include "models/Rope.h"
#include "parallel/comm/Communicator.h"
#include "parallel/tensor/Lora.h"
#include "parallel/tensor/ParallelLinear.h"
#include "parallel/tensor/TensorParallelRng.h"

namespace loom::models {

// Activation recomputation (Megatron's terms). FULL: each block's forward is rerun in backward
// (only its input is kept). SELECTIVE: the matmul outputs are kept, and what is cheap to redo
// and large to keep (the attention probabilities with dropout, the GELU / SwiGLU output) is
// recomputed.
enum class Recompute : uint8_t { None, Selective, Full };

// The target match of LoRA (Block::add_lora): target == layer or layer ends in "."+target.
bool lora_target_matches(const std::string& target, const std::string& layer);

class Block : public nn::Module {
 public:
  Block(const GPTConfig& c, Communicator& tp, DType dtype, Device device);
  // x (B,T,C) -> (B,T,C). `rng` holds this block's keyed dropout streams; `rope` the angles of
  // positions [0, T) (undefined tables with learned positions).
  Tensor forward(const Tensor& x, tp::TensorParallelRng& rng, Recompute recompute,
                 const RopeTables& rope) const;
  // x (B,T,C) for the slots [cache.length(), +T) (`rope` holds their angles: (T, D/2), or
  // (B*T, D/2) when rows sit at different positions): appends their k/v (this rank's kv heads)
  // to `layer` of the cache and attends over every cached slot, causally or, given an additive
  // bias (B,1,T,length+T) of 0 / -inf, wherever the bias is 0.
  Tensor forward_cached(const Tensor& x, KVCache& cache, int64_t layer, const RopeTables& rope,
                        const Tensor& bias = Tensor()) const;
  int64_t local_kv_heads() const { return local_kv_heads_; }
  // The block-relative names of the linear layers of a block of config c.
  static std::vector<std::string> linear_names(const GPTConfig& c);
  // Adds a LoRA adapter (parallel/tensor/Lora.h) to each linear layer a target names: the
  // block-relative name ("attn.proj") or its last part ("proj": attn.proj and mlp.proj). Returns
  // the names of the layers given one.
  std::vector<std::string> add_lora(const tp::LoraOptions& o,
                                    const std::vector<std::string>& targets);

 private:
  // q (B,T,Hq,D) and k, v (B,T,Hkv,D) of this rank's heads, rotated when rope is defined.
  // `gen`: the LoRA adapters' dropout stream (null: none).
  std::tuple<Tensor, Tensor, Tensor> project_qkv(const Tensor& x, const RopeTables& rope,
                                                 Generator* gen = nullptr) const;
  // (B,Hkv,L,D) -> (B,Hq,L,D): each kv head repeated for the query heads of its group.
  Tensor expand_kv(const Tensor& t) const;
  Tensor attention(const Tensor& x, tp::TensorParallelRng& rng, Recompute recompute,
                   const RopeTables& rope) const;
  Tensor mlp(const Tensor& x, tp::TensorParallelRng& rng, Recompute recompute) const;

  Communicator& tp_;
  int64_t local_heads_, local_kv_heads_, head_dim_;
  int64_t kv_group_ = -1;  // replicated kv heads: the one this rank's query heads use; else -1
  double dropout_;
  MlpKind mlp_kind_;
  Norm ln_1_;
  std::unique_ptr<tp::ColumnParallelLinear> qkv_;  // [q; k; v] when n_kv_head == n_head
  std::unique_ptr<tp::ColumnParallelLinear> q_;    // grouped-query heads
  std::unique_ptr<tp::ColumnParallelLinear> kv_;   // [k; v], kv heads split over TP
  std::unique_ptr<Linear> kv_whole_;               // [k; v], replicated (tp > n_kv_head)
  tp::RowParallelLinear attn_proj_;
  Norm ln_2_;
  tp::ColumnParallelLinear fc_;
  tp::RowParallelLinear mlp_proj_;
};

}  // namespace loom::models

// GPT: the GPT-2 architecture (token + position embeddings, n_layer pre-LN transformer blocks,
// final LayerNorm, LM head tied to wte unless config.tie_embeddings is false). Parameter names
// match the layout used by checkpoints and by HF conversion (Linear weights are (out, in)):
//   wte.weight, wpe.weight,
//   blocks.{i}.{ln_1,attn.qkv,attn.proj,ln_2,mlp.fc,mlp.proj}.{weight,bias},
//   ln_f.{weight,bias}, [lm_head.weight]
//   Generator gen(1337);
//   GPT model(GPTConfig::preset("gpt2-124m"), gen);     // GPT-2 init from gen
//   Tensor loss = model.loss(ids, targets);              // ids, targets (B,T) I64
//   loss.backward();
#pragma once

#include <memory>
#include <vector>

#include "core/random/Generator.h"
#include "models/GPTConfig.h"
#include "models/KVCache.h"
#include "models/Layers.h"

namespace loom::models {

// One qkv projection C->3C, causal scaled-dot-product attention over n_head heads, then C->C.
class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(const GPTConfig& c, DType dtype, Device device);
  Tensor forward(const Tensor& x, Generator& gen) const;  // x (B,T,C) -> (B,T,C)
  // x (B,T,C) at positions [cache.length(), +T): appends their k/v to `layer` of the cache and
  // attends over every cached position (new query i sees keys <= length+i). No dropout.
  Tensor forward_cached(const Tensor& x, KVCache& cache, int64_t layer) const;
  Linear& qkv() { return qkv_; }
  Linear& proj() { return proj_; }

 private:
  // softmax(q k^T / sqrt(D) + causal mask) with dropout on the probabilities, then @ v. Only used
  // when attention dropout is active, since the fused kernel has no dropout.
  Tensor attention_with_dropout(const Tensor& q, const Tensor& k, const Tensor& v,
                                Generator& gen) const;
  int64_t n_head_;
  double dropout_;
  Linear qkv_;
  Linear proj_;
};

// fc C->4C, GELU (tanh form), proj 4C->C, residual dropout.
class MLP : public Module {
 public:
  MLP(const GPTConfig& c, DType dtype, Device device);
  Tensor forward(const Tensor& x, Generator& gen) const;  // x (B,T,C) -> (B,T,C)
  Linear& fc() { return fc_; }
  Linear& proj() { return proj_; }

 private:
  double dropout_;
  Linear fc_;
  Linear proj_;
};

// Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class Block : public Module {
 public:
  Block(const GPTConfig& c, DType dtype, Device device);
  Tensor forward(const Tensor& x, Generator& gen) const;  // x (B,T,C) -> (B,T,C)
  Tensor forward_cached(const Tensor& x, KVCache& cache, int64_t layer) const;  // no dropout
  // GPT-2 init: LN 1/0, Linear N(0, std) with residual projections N(0, residual_std).
  void init(Generator& gen, double std, double residual_std);

 private:
  LayerNorm ln_1_;
  CausalSelfAttention attn_;
  LayerNorm ln_2_;
  MLP mlp_;
};

class GPT : public Module {
 public:
  // Builds the model and initialises it GPT-2 style from `init_gen` (draws in parameter order).
  GPT(const GPTConfig& config, Generator& init_gen, DType dtype = DType::F32,
      Device device = Device::cpu());
  // Re-draws every parameter: N(0, init_std) for Linear and embedding weights, N(0,
  // init_std/sqrt(2*n_layer)) for attn.proj and mlp.proj weights, zero biases, LayerNorm 1/0.
  void init_weights(Generator& gen);

  // ids (B,T) I64 with T <= block_size -> logits (B,T,V) over the real vocabulary
  // (config.logits_size() columns; padded rows of the head are left out). Not const: in training mode with
  // dropout > 0 it advances dropout_generator().
  Tensor forward(const Tensor& ids);
  // The final hidden states ln_f(x) (B,T,C) that forward() projects onto the vocabulary (reward
  // and value heads read them).
  Tensor hidden_states(const Tensor& ids);
  // Incremental inference: ids (B,T) I64 are the tokens at positions [cache.length(), +T); their
  // k/v are appended to the cache (which then advances by T) and the logits (B,T,V) for those
  // positions are returned, equal to forward(all tokens so far) at the same positions up to
  // rounding. last_only: return only the last position's logits (B,1,V). Records no autograd
  // history; requires eval mode when dropout > 0 (the cached path never drops).
  Tensor forward_cached(const Tensor& ids, KVCache& cache, bool last_only = false);
  // Mean cross entropy of forward(ids) against targets (B,T) over the non-ignored positions.
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100);

  const GPTConfig& config() const { return config_; }
  // The LM head weight (V,C): wte.weight when tied.
  const Tensor& lm_head_weight() const;
  // Stream for dropout masks (consumed only in training mode with dropout > 0); its state is
  // part of a resumable checkpoint. Seeded from init_gen's seed on a separate key.
  Generator& dropout_generator() { return dropout_gen_; }

 private:
  Tensor logits_of(const Tensor& h) const;  // h (...,C) -> (...,logits_size())
  GPTConfig config_;
  Embedding wte_;
  Embedding wpe_;
  std::vector<std::unique_ptr<Block>> blocks_;
  LayerNorm ln_f_;
  Tensor lm_head_;  // undefined when tied
  Generator dropout_gen_;
};

}  // namespace loom::models

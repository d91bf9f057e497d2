// The replicated basic layers: Norm (LayerNorm or RMSNorm), Embedding (the position table) and
// Linear (small heads such as the reward model's value head, the replicated kv projection when
// tp > n_kv_head). Every rank of a tensor-parallel group holds the whole tensor; `owner` is true
// on exactly one of them (TP rank 0), which counts it in the gradient norm and writes it into
// checkpoints. Each registers its parameters with the init rule nn::Module::init_parameters()
// applies. The tensor-parallel layers are in parallel/tensor/.
//   Norm ln(768, NormKind::LayerNorm, /*bias=*/true, /*owner=*/tp.rank() == 0);  // w 1, b 0
//   Tensor y = ln.forward(x);                                                   // last dim
#pragma once

#include <cstdint>

#include "core/nn/Module.h"
#include "models/GPTConfig.h"
#include "parallel/tensor/Lora.h"

namespace loom::models {

class Linear : public nn::Module {
 public:
  // weight (out, in) ~ N(0, init_std), bias (out) = 0.
  Linear(int64_t in_features, int64_t out_features, bool bias, bool owner, double init_std,
         DType dtype = DType::F32, Device device = Device::cpu());
  // x (..., in) -> (..., out); `gen` draws the LoRA adapter's dropout mask when training.
  Tensor forward(const Tensor& x, Generator* gen = nullptr) const;
  // Adds a LoRA adapter (parallel/tensor/Lora.h): lora_A (r, in), lora_B (out, r), both whole,
  // owned like the weight.
  void add_lora(const tp::LoraOptions& o);
  const Tensor& weight() const { return weight_; }  // (out, in)
  const Tensor& bias() const { return bias_; }      // (out) or undefined
  const Tensor& lora_A() const { return lora_A_; }  // undefined without an adapter
  const Tensor& lora_B() const { return lora_B_; }

 private:
  Tensor weight_;
  Tensor bias_;
  bool owner_;
  tp::LoraOptions lora_;
  Tensor lora_A_, lora_B_;
};

class Norm : public nn::Module {
 public:
  // LayerNorm: weight (dim) = 1 and, with bias, bias (dim) = 0. RMSNorm: weight only (Llama's
  // has no bias; `bias` is ignored).
  Norm(int64_t dim, NormKind kind, bool bias, bool owner, double eps = 1e-5,
       DType dtype = DType::F32, Device device = Device::cpu());
  Tensor forward(const Tensor& x) const;  // normalises the last dim (size dim)
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined for RMSNorm or without bias

 private:
  NormKind kind_;
  Tensor weight_;
  Tensor bias_;
  double eps_;
};

class Embedding : public nn::Module {
 public:
  // weight (num, dim) ~ N(0, init_std).
  Embedding(int64_t num, int64_t dim, bool owner, double init_std, DType dtype = DType::F32,
            Device device = Device::cpu());
  Tensor forward(const Tensor& ids) const;  // ids (...) I64 -> (..., dim)
  const Tensor& weight() const { return weight_; }  // (num, dim)

 private:
  Tensor weight_;
};

}  // namespace loom::models

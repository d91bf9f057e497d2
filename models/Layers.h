// The replicated basic layers: LayerNorm, Embedding (the position table) and Linear (small heads
// such as the reward model's value head). Every rank of a tensor-parallel group holds the whole
// tensor; `owner` is true on exactly one of them (TP rank 0), which counts it in the gradient
// norm and writes it into checkpoints. Each registers its parameters with the init rule
// nn::Module::init_parameters() applies. The tensor-parallel layers are in parallel/tensor/.
//   LayerNorm ln(768, /*bias=*/true, /*owner=*/tp.rank() == 0);   // weight 1, bias 0 at init
//   Tensor y = ln.forward(x);                                      // normalises the last dim
#pragma once

#include <cstdint>

#include "core/nn/Module.h"

namespace loom::models {

class Linear : public nn::Module {
 public:
  // weight (out, in) ~ N(0, init_std), bias (out) = 0.
  Linear(int64_t in_features, int64_t out_features, bool bias, bool owner, double init_std,
         DType dtype = DType::F32, Device device = Device::cpu());
  Tensor forward(const Tensor& x) const;  // x (..., in) -> (..., out)
  const Tensor& weight() const { return weight_; }  // (out, in)
  const Tensor& bias() const { return bias_; }      // (out) or undefined

 private:
  Tensor weight_;
  Tensor bias_;
};

class LayerNorm : public nn::Module {
 public:
  LayerNorm(int64_t dim, bool bias, bool owner, DType dtype = DType::F32,
            Device device = Device::cpu(), double eps = 1e-5);
  Tensor forward(const Tensor& x) const;  // normalises the last dim (size dim)
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
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

// The basic layers GPT is built from: Linear (weight (out, in), PyTorch layout), LayerNorm and
// Embedding. Each owns its parameters (registered on the Module base) and an init() that draws
// them from a loom::Generator, so initialisation is reproducible and thread-count independent.
//   Linear fc(768, 3072, /*bias=*/true);
//   fc.init(gen, 0.02);              // weight ~ N(0, 0.02), bias = 0
//   Tensor y = fc.forward(x);        // x (B,T,768) -> (B,T,3072)
#pragma once

#include <cstdint>

#include "core/random/Generator.h"
#include "models/Module.h"

namespace loom::models {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, DType dtype = DType::F32,
         Device device = Device::cpu());
  Tensor forward(const Tensor& x) const;  // x (..., in) -> (..., out)
  // weight ~ N(0, std), bias = 0.
  void init(Generator& gen, double std);
  const Tensor& weight() const { return weight_; }  // (out, in)
  const Tensor& bias() const { return bias_; }      // (out) or undefined

 private:
  Tensor weight_;
  Tensor bias_;
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, bool bias, DType dtype = DType::F32, Device device = Device::cpu(),
            double eps = 1e-5);
  Tensor forward(const Tensor& x) const;  // normalises the last dim (size dim)
  void init();                            // weight = 1, bias = 0
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_;
  Tensor bias_;
  double eps_;
};

class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, DType dtype = DType::F32, Device device = Device::cpu());
  Tensor forward(const Tensor& ids) const;  // ids (...) I64 -> (..., dim)
  void init(Generator& gen, double std);    // weight ~ N(0, std)
  const Tensor& weight() const { return weight_; }  // (num, dim)

 private:
  Tensor weight_;
};

}  // namespace loom::models

// Linear, LayerNorm and Embedding: thin wrappers over core ops that own their parameters.
#include "models/Layers.h"

#include "core/autograd/GradMode.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"

namespace loom::models {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, DType dtype, Device device) {
  weight_ = register_parameter("weight", Tensor::zeros({out_features, in_features}, dtype, device));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}, dtype, device));
}

Tensor Linear::forward(const Tensor& x) const { return loom::linear(x, weight_, bias_); }

void Linear::init(Generator& gen, double std) {
  NoGradGuard no_grad;
  weight_.normal_(gen, 0.0, std);
  if (bias_.defined()) bias_.zero_();
}

LayerNorm::LayerNorm(int64_t dim, bool bias, DType dtype, Device device, double eps) : eps_(eps) {
  weight_ = register_parameter("weight", Tensor::ones({dim}, dtype, device));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({dim}, dtype, device));
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return loom::layer_norm(x, weight_, bias_, eps_);
}

void LayerNorm::init() {
  NoGradGuard no_grad;
  weight_.fill_(1.0);
  if (bias_.defined()) bias_.zero_();
}

Embedding::Embedding(int64_t num, int64_t dim, DType dtype, Device device) {
  weight_ = register_parameter("weight", Tensor::zeros({num, dim}, dtype, device));
}

Tensor Embedding::forward(const Tensor& ids) const { return loom::embedding(weight_, ids); }

void Embedding::init(Generator& gen, double std) {
  NoGradGuard no_grad;
  weight_.normal_(gen, 0.0, std);
}

}  // namespace loom::models

// Linear, Norm and Embedding: thin wrappers over core ops that own their (replicated) parameters.
#include "models/Layers.h"

#include "core/ops/Linear.h"
#include "core/ops/Nn.h"

namespace loom::models {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, bool owner, double init_std,
               DType dtype, Device device) {
  weight_ = register_parameter("weight", Tensor::zeros({out_features, in_features}, dtype, device),
                               {{}, owner, nn::Init::Normal, init_std});
  if (bias)
    bias_ = register_parameter("bias", Tensor::zeros({out_features}, dtype, device),
                               {{}, owner, nn::Init::Zeros});
}

Tensor Linear::forward(const Tensor& x) const { return loom::linear(x, weight_, bias_); }

Norm::Norm(int64_t dim, NormKind kind, bool bias, bool owner, double eps, DType dtype,
           Device device)
    : kind_(kind), eps_(eps) {
  weight_ = register_parameter("weight", Tensor::ones({dim}, dtype, device),
                               {{}, owner, nn::Init::Ones});
  if (bias && kind == NormKind::LayerNorm)
    bias_ = register_parameter("bias", Tensor::zeros({dim}, dtype, device),
                               {{}, owner, nn::Init::Zeros});
}

Tensor Norm::forward(const Tensor& x) const {
  return kind_ == NormKind::RMSNorm ? loom::rms_norm(x, weight_, eps_)
                                    : loom::layer_norm(x, weight_, bias_, eps_);
}

Embedding::Embedding(int64_t num, int64_t dim, bool owner, double init_std, DType dtype,
                     Device device) {
  weight_ = register_parameter("weight", Tensor::zeros({num, dim}, dtype, device),
                               {{}, owner, nn::Init::Normal, init_std});
}

Tensor Embedding::forward(const Tensor& ids) const { return loom::embedding(weight_, ids); }

}  // namespace loom::models

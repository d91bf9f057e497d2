// Linear, Norm and Embedding: thin wrappers over core ops that own their (replicated) parameters.
#include "models/Layers.h"

#include "core/ops/Linear.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"

namespace loom::models {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, bool owner, double init_std,
               DType dtype, Device device)
    : owner_(owner) {
  weight_ = register_parameter("weight", Tensor::zeros({out_features, in_features}, dtype, device),
                               {{}, owner, nn::Init::Normal, init_std});
  if (bias)
    bias_ = register_parameter("bias", Tensor::zeros({out_features}, dtype, device),
                               {{}, owner, nn::Init::Zeros});
}

Tensor Linear::forward(const Tensor& x, Generator* gen) const {
  Tensor y = loom::linear(x, weight_, bias_);
  if (!lora_A_.defined()) return y;
  return y + tp::lora_whole(x, lora_A_, lora_B_, lora_,
                            tp::lora_dropout_gen(lora_, gen, is_training()));
}

void Linear::add_lora(const tp::LoraOptions& o) {
  tp::check_lora_options(o);
  LOOM_CHECK(!lora_A_.defined(), "Linear: expected no adapter yet, got one");
  lora_ = o;
  const int64_t out = weight_.size(0), in = weight_.size(1);
  lora_A_ = register_parameter("lora_A", Tensor::zeros({o.rank, in}, weight_.dtype(),
                                                       weight_.device()),
                               {{}, owner_, nn::Init::Normal, o.init_std});
  lora_B_ = register_parameter("lora_B", Tensor::zeros({out, o.rank}, weight_.dtype(),
                                                       weight_.device()),
                               {{}, owner_, nn::Init::Zeros});
}

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

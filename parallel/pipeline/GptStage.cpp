// GPT-2 pipeline stage (see GptStage.h). The op sequence per stage is the one GPT::loss runs
// (wte(ids) + wpe(pos), the blocks, ln_f, linear with the head, cross entropy on (N,V)), so a
// pipelined step reproduces the single-process step bitwise when embeddings are untied.
#include "parallel/pipeline/GptStage.h"

#include <algorithm>
#include <map>
#include <string>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"

namespace loom::pipeline {

std::pair<int64_t, int64_t> stage_layers(int64_t n_layer, int pp, int stage) {
  LOOM_CHECK(pp >= 1 && pp <= n_layer, "stage_layers: expected 1 <= pp <= n_layer (", n_layer,
             "), got pp ", pp);
  LOOM_CHECK(stage >= 0 && stage < pp, "stage_layers: expected a stage in [0, ", pp, "), got ",
             stage);
  const int64_t base = n_layer / pp, extra = n_layer % pp;
  const int64_t begin = stage * base + std::min<int64_t>(stage, extra);
  return {begin, begin + base + (stage < extra ? 1 : 0)};
}

GptStage::GptStage(const models::GPTConfig& config, int stage, int pp, DType dtype, Device device)
    : config_(config), stage_(stage), pp_(pp), layers_(stage_layers(config.n_layer, pp, stage)) {
  config_.validate();
  LOOM_CHECK(config_.dropout == 0.0, "GptStage: expected dropout 0 (pipeline dropout streams ",
             "are not implemented yet), got ", config_.dropout);
  const int64_t V = config_.vocab_size, C = config_.n_embd;
  if (is_first() || (is_last() && config_.tie_embeddings)) {
    wte_ = std::make_unique<models::Embedding>(V, C, dtype, device);
    register_module("wte", *wte_);
  }
  if (is_first()) {
    wpe_ = std::make_unique<models::Embedding>(config_.block_size, C, dtype, device);
    register_module("wpe", *wpe_);
  }
  for (int64_t i = layers_.first; i < layers_.second; ++i) {
    blocks_.push_back(std::make_unique<models::Block>(config_, dtype, device));
    register_module("blocks." + std::to_string(i), *blocks_.back());
  }
  if (is_last()) {
    ln_f_ = std::make_unique<models::LayerNorm>(C, config_.bias, dtype, device);
    register_module("ln_f", *ln_f_);
    if (!config_.tie_embeddings)
      lm_head_ = register_parameter("lm_head.weight", Tensor::zeros({V, C}, dtype, device));
  }
}

void GptStage::load_from(const std::vector<models::NamedTensor>& source) {
  std::map<std::string, Tensor> by_name(source.begin(), source.end());
  NoGradGuard no_grad;
  for (const auto& [name, param] : named_parameters()) {
    auto it = by_name.find(name);
    LOOM_CHECK(it != by_name.end(), "GptStage.load_from: expected a parameter named '", name,
               "', got none");
    LOOM_CHECK(it->second.shape() == param.shape(), "GptStage.load_from: expected '", name,
               "' of shape ", param.shape(), ", got ", it->second.shape());
    Tensor dst = param;
    dst.copy_(it->second);
  }
}

Tensor GptStage::tied_weight() const {
  return (config_.tie_embeddings && wte_) ? wte_->weight() : Tensor();
}

Tensor GptStage::embed(const Tensor& ids) const {
  LOOM_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::I64,
             "GptStage.forward: expected ids of shape (b,T) and dtype i64 on the first stage");
  const int64_t T = ids.size(1);
  LOOM_CHECK(T >= 1 && T <= config_.block_size, "GptStage.forward: expected T in [1, ",
             config_.block_size, "], got ", T);
  Tensor pos = Tensor::arange(T, DType::I64, ids.device());
  return wte_->forward(ids) + wpe_->forward(pos);  // (b,T,C) + (T,C)
}

Tensor GptStage::head_loss(const Tensor& x, const Tensor& targets) const {
  LOOM_CHECK(targets.defined() && targets.dim() == 2 && targets.size(0) == x.size(0) &&
                 targets.size(1) == x.size(1),
             "GptStage.forward: expected targets of shape (", x.size(0), ",", x.size(1),
             ") on the last stage");
  const Tensor& head = lm_head_.defined() ? lm_head_ : wte_->weight();
  Tensor logits = linear(ln_f_->forward(x), head);  // (b,T,V)
  const int64_t N = targets.numel(), V = config_.vocab_size;
  return cross_entropy(logits.reshape({N, V}), targets.reshape({N}), -100);
}

Tensor GptStage::forward(const Tensor& x, const MicroBatch& mb) {
  Generator& gen = no_dropout_;  // NB: dropout is 0 (checked), so no mask is ever drawn
  Tensor h = is_first() ? embed(mb.ids) : x;
  LOOM_CHECK(h.dim() == 3 && h.size(2) == config_.n_embd, "GptStage.forward: expected an ",
             "activation of shape (b,T,", config_.n_embd, "), got ", h.shape());
  for (auto& b : blocks_) h = b->forward(h, gen);
  return is_last() ? head_loss(h, mb.targets) : h;
}

}  // namespace loom::pipeline

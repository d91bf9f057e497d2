// GptStage: one pipeline stage of a GPT-2 model (models/GPT.h), built from the same layers so a
// pipelined run computes exactly what the single-process GPT computes. Stage s of pp owns the
// contiguous block range stage_layers(n_layer, pp, s); the first stage also owns wte and wpe, the
// last ln_f and the LM head (lm_head.weight, or its own copy of wte.weight when embeddings are
// tied: keep the two copies equal with TiedGradSync). Parameter names are the GPT's
// ("blocks.5.attn.qkv.weight"), so load_from() copies a stage's slice out of a full model or a
// checkpoint by name. Dropout is not supported yet (config.dropout must be 0).
//   GptStage stage(config, p2p.stage(), p2p.num_stages());
//   stage.load_from(full_gpt.named_parameters());
//   run_pipeline(ScheduleKind::OneFOneB, stage, p2p, micro_batches);
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/random/Generator.h"
#include "models/GPT.h"
#include "parallel/pipeline/PipelineStage.h"

namespace loom::pipeline {

// [begin, end) of the blocks stage `stage` of `pp` owns: n_layer split as evenly as possible, the
// first n_layer % pp stages one block longer. Throws ValueError when pp > n_layer.
std::pair<int64_t, int64_t> stage_layers(int64_t n_layer, int pp, int stage);

class GptStage : public models::Module, public PipelineStage {
 public:
  GptStage(const models::GPTConfig& config, int stage, int pp, DType dtype = DType::F32,
           Device device = Device::cpu());

  // Copies every parameter of this stage from the entry of `source` with the same name; throws
  // ValueError naming the first missing name or mismatched shape.
  void load_from(const std::vector<models::NamedTensor>& source);

  // First stage: mb.ids (b,T) -> (b,T,C); middle: x (b,T,C) -> (b,T,C); last: mean cross entropy
  // of the logits against mb.targets (ignore index -100).
  Tensor forward(const Tensor& x, const MicroBatch& mb) override;

  // The (b,T,C) shape every stage sends for micro-batches of b sequences of length T.
  Shape activation_shape(int64_t b, int64_t T) const { return {b, T, config_.n_embd}; }
  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == pp_ - 1; }
  std::pair<int64_t, int64_t> layers() const { return layers_; }
  // wte.weight on the first and (when tied) the last stage; undefined elsewhere.
  Tensor tied_weight() const;

 private:
  Tensor embed(const Tensor& ids) const;                           // (b,T) -> (b,T,C)
  Tensor head_loss(const Tensor& x, const Tensor& targets) const;  // (b,T,C) -> scalar

  models::GPTConfig config_;
  int stage_, pp_;
  std::pair<int64_t, int64_t> layers_;
  std::unique_ptr<models::Embedding> wte_, wpe_;
  std::vector<std::unique_ptr<models::Block>> blocks_;
  std::unique_ptr<models::LayerNorm> ln_f_;
  Tensor lm_head_;  // untied last stage only
  Generator no_dropout_;
};

}  // namespace loom::pipeline

// ParallelGpt: the part of a GPT-2 model (models/GPT.h) that one rank of a TP x PP grid holds and
// runs. Pipeline stage s owns blocks stage_layers(n_layer, pp, s); every block is a tensor-parallel
// tp::ParallelBlock (heads and MLP columns split over the TP group); the first stage owns the
// vocab-parallel token embedding and the (replicated) position embedding, the last stage ln_f and
// the LM head: vocab-parallel logits and vocab-parallel cross entropy, so no rank holds
// full-vocabulary logits. With tied embeddings the last stage holds its own copy of its wte rows
// (keep it equal with pipeline::TiedGradSync); at pp == 1 the one table serves both ends.
// Parameters carry the single-process GPT's names ("blocks.5.attn.qkv.weight") and a ShardSpec
// saying which piece of the logical tensor they are, so load_from() slices a full model or a
// layout-free checkpoint, and checkpoint writers know what each rank owns.
// tp = pp = 1 computes exactly what models::GPT computes (up to summation order).
//   ParallelGpt m(gpt_config, real_vocab, grid.tp_group(), grid.pp_rank(), grid.pp_size());
//   m.load_from(full_gpt.named_parameters());
//   run_pipeline(ScheduleKind::OneFOneB, m, p2p, micro_batches);
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/GPT.h"
#include "parallel/ShardSpec.h"
#include "parallel/comm/Communicator.h"
#include "parallel/pipeline/PipelineStage.h"
#include "parallel/tensor/ParallelBlocks.h"
#include "parallel/tensor/TensorParallelRng.h"
#include "parallel/tensor/VocabParallel.h"

namespace loom::pipeline {

struct ParallelParam {
  std::string name;  // the single-process GPT's parameter name
  Tensor tensor;     // this rank's piece (a trainable leaf)
  ShardSpec spec;    // where the piece sits in the logical tensor
  // True for exactly one holder of each logical element over the TP x PP ranks of one DP
  // replica: pieces split over TP (dim >= 0) on every TP rank, whole (TP-replicated) tensors
  // on TP rank 0 only, and never the last stage's copy of a tied wte when pp > 1. Checkpoint
  // writers write these pieces (on DP rank 0); the global gradient norm counts them once.
  bool owner = true;
};

class ParallelGpt : public models::Module, public PipelineStage {
 public:
  // config.vocab_size: the padded row count (a multiple of tp); vocab_size: the real vocabulary
  // (ids and targets are < vocab_size; padded columns are masked out of the loss).
  // `tp` must outlive the model.
  ParallelGpt(const models::GPTConfig& config, int64_t vocab_size, Communicator& tp, int stage,
              int pp, uint64_t seed, DType dtype = DType::F32, Device device = Device::cpu());

  // Elements of the pieces a rank at (stage, any TP rank) holds for `config` (padded vocab rows
  // included, the last stage's tied copy of wte counted): what `loom plan` reports per rank.
  static int64_t local_parameters(const models::GPTConfig& config, int tp, int stage, int pp);

  // Copies every piece this rank holds out of the logical tensors in `source` (full shapes, as
  // models::GPT::named_parameters() or a checkpoint's "model/..." tensors without the prefix).
  // wte/lm_head tables may have any row count >= vocab_size: real rows are copied, padded rows
  // are zero. Throws CheckpointError-style ValueError listing every missing name / bad shape.
  void load_from(const std::map<std::string, Tensor>& source);

  // PipelineStage: first stage: mb.ids (b,T) -> (b,T,C); middle: (b,T,C) -> (b,T,C); last:
  // mean cross entropy over the non-ignored targets (ignore index -100). At pp == 1 the one
  // stage maps ids to the loss.
  Tensor forward(const Tensor& x, const MicroBatch& mb) override;

  // Every parameter piece of this rank, in registration order (the order named_parameters()
  // yields), with its spec and ownership.
  const std::vector<ParallelParam>& pieces() const { return pieces_; }
  // For tp::grad_norm over the TP x PP group: owner pieces split over TP / owner pieces that are
  // whole (TP-replicated).
  std::vector<Tensor> norm_sharded() const;
  std::vector<Tensor> norm_replicated() const;
  // wte.weight on the first stage and, when tied and pp > 1, on the last; undefined elsewhere.
  Tensor tied_weight() const;

  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == pp_ - 1; }
  std::pair<int64_t, int64_t> layers() const { return layers_; }
  Shape activation_shape(int64_t b, int64_t T) const { return {b, T, config_.n_embd}; }
  const models::GPTConfig& config() const { return config_; }
  tp::TensorParallelRng& rng() { return rng_; }  // dropout streams
  // Dropout masks keyed by (step, micro-batch index, layer): every layer of every micro-batch
  // draws from its own Philox stream (tp::TensorParallelRng seeded by a hash of the key), so the
  // masks do not depend on how the layers are split over stages or on the schedule, and resuming
  // at a step redraws them exactly. Used for micro-batches with index >= 0; a micro-batch
  // without an index draws from rng() in call order, which only pp == 1 allows.
  void set_step(int64_t step) { step_ = step; }

 private:
  void add_piece(const std::string& name, const Tensor& t, const ShardSpec& spec, bool owner);
  void add_block_pieces(int64_t layer, tp::ParallelBlock& block);
  // Every missing name / bad shape in `source` for this rank's pieces (empty when loadable).
  std::vector<std::string> load_problems(const std::map<std::string, Tensor>& source) const;
  Tensor embed(const Tensor& ids, bool training);                  // (b,T) -> (b,T,C)
  Tensor head_loss(const Tensor& h, const Tensor& targets) const;  // (b,T,C) -> scalar

  models::GPTConfig config_;
  int64_t vocab_size_;
  Communicator& tp_;
  int stage_, pp_;
  std::pair<int64_t, int64_t> layers_;
  tp::TensorParallelRng rng_;
  uint64_t seed_;
  int64_t step_ = 0;
  tp::VocabPartition part_;  // this rank's rows of the padded vocabulary (wte and lm_head)
  std::unique_ptr<tp::VocabParallelEmbedding> wte_;
  Tensor wpe_;
  std::vector<std::unique_ptr<tp::ParallelBlock>> blocks_;
  Tensor ln_f_w_, ln_f_b_;
  std::unique_ptr<tp::VocabParallelEmbedding> lm_head_;  // untied head, last stage
  std::vector<ParallelParam> pieces_;
};

}  // namespace loom::pipeline

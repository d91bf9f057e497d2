// GPT: the one decoder-only transformer Loom trains, GPT-2 by default and the Llama family
// (Llama 3, Qwen2, Mistral) by config (GPTConfig.h): token embeddings [+ learned positions],
// n_layer pre-norm blocks (Block.h), a final norm, and an LM head tied to wte unless
// config.tie_embeddings is false. Written once and parallel by construction: the same code runs in
// one process and as one rank of any tensor x pipeline layout (Megatron-Core's idea). The blocks
// are built from tensor-parallel layers, the vocabulary tables and the cross entropy are
// vocab-parallel, and pipeline stage s of pp holds only its blocks stage_layers(n_layer, pp, s),
// the first stage the embeddings, the last ln_f and the head. Each rank allocates only its pieces;
// init_weights(seed) draws every logical element from (seed, name, index), so all layouts start
// from the same model. Parameter names are the logical ones (Linear weights are (out, in));
// checkpoints and HF conversion key on them:
//   wte.weight, [wpe.weight (learned positions)],
//   blocks.{i}.{ln_1, attn.qkv | attn.q + attn.kv, attn.proj, ln_2, mlp.fc, mlp.proj}.{weight,bias}
//   ln_f.{weight,bias}, [lm_head.weight]
// and with LoRA (add_lora) blocks.{i}.<layer>.{lora_A,lora_B} beside the frozen rest.
// With tied embeddings and pp > 1 the last stage holds its own copy of wte (not an owner; keep
// it equal with the trainer's gradient sync).
//   GPT model(GPTConfig::preset("gpt2-124m"));           // one process
//   model.init_weights(1337);
//   Tensor loss = model.loss(ids, targets);              // ids, targets (B,T) I64
//   GPT part(cfg, {&grid.tp_group(), &grid.pp_group()}); // one rank of a TP x PP layout
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/Module.h"
#include "models/Block.h"
#include "models/GPTConfig.h"
#include "models/KVCache.h"
#include "models/Layers.h"
#include "parallel/comm/Communicator.h"
#include "parallel/pipeline/PipelineStage.h"
#include "parallel/tensor/ParallelLinear.h"
#include "parallel/tensor/TensorParallelRng.h"
#include "parallel/tensor/VocabParallel.h"

namespace loom::models {

// Where a model instance sits in the model-parallel grid. Null groups mean a single rank (the
// model then owns a one-rank communicator). Groups must outlive the model.
struct Layout {
  Communicator* tp = nullptr;  // tensor-parallel group
  Communicator* pp = nullptr;  // pipeline group (rank = stage)
};

// [begin, end) of the blocks stage `stage` of `pp` owns: n_layer split as evenly as possible, the
// first n_layer % pp stages one block longer. Throws ValueError when pp > n_layer.
std::pair<int64_t, int64_t> stage_layers(int64_t n_layer, int pp, int stage);

// Whether parameter `name` is a LoRA adapter's (ends in ".lora_A" or ".lora_B").
bool is_lora_param(const std::string& name);

// Dropout masks are keyed by (seed, step, micro-batch, layer): every layer of every micro-batch
// draws from its own Philox stream, so masks depend neither on how layers are split over stages
// nor on the schedule, a recomputed block redraws exactly its masks, and a resumed step redraws
// the original ones.
struct DropoutKey {
  int64_t step = 0;
  int64_t micro_batch = 0;
};

class GPT : public nn::Module, public pipeline::PipelineStage {
 public:
  // Allocates this rank's pieces (zeros); call init_weights() or load weights next.
  explicit GPT(const GPTConfig& config, Layout layout = {}, DType dtype = DType::F32,
               Device device = Device::cpu());
  ~GPT() override;

  // Elements of the pieces a rank at (stage, any TP rank) holds for `config` (padded vocabulary
  // rows included, the last stage's tied copy of wte counted): what `loom plan` reports.
  static int64_t local_parameters(const GPTConfig& config, int tp, int stage, int pp);
  // Elements of the LoRA adapters (rank r on the layers `targets` name, add_lora) such a rank
  // holds: what its optimizer updates in a LoRA run.
  static int64_t local_lora_parameters(const GPTConfig& config,
                                       const std::vector<std::string>& targets, int64_t r, int tp,
                                       int stage, int pp);

  // GPT-2 init of every logical element from (seed, name, index): N(0, init_std) for Linear and
  // embedding weights, N(0, init_std/sqrt(2*n_layer)) for attn.proj and mlp.proj weights, zero
  // biases, norm weights 1, padded vocabulary rows 0. Also seeds the dropout streams.
  void init_weights(uint64_t seed);
  void set_dropout_seed(uint64_t seed) { dropout_seed_ = seed; }
  // LoRA: adds an adapter (parallel/tensor/Lora.h) to each block's linear layers that `targets`
  // name (Block::add_lora), draws the adapters from `seed` (every layout alike) and freezes every
  // other parameter. ValueError naming lora.target_modules when a target names no linear layer of
  // this architecture (the message lists those that exist).
  void add_lora(const tp::LoraOptions& o, const std::vector<std::string>& targets, uint64_t seed);
  bool has_lora() const { return has_lora_; }
  void set_recompute(Recompute r) { recompute_ = r; }
  // The step keying dropout masks; micro-batches carry their own index (MicroBatch.index).
  void set_step(int64_t step) { key_.step = step; }

  // ---- pipeline stage ------------------------------------------------------------------------
  // First stage: mb.ids (b,T) -> (b,T,C); middle: x (b,T,C) -> (b,T,C); last: the scalar loss
  // mb.objective(h) of the final hidden states h = ln_f(x) (b,T,C), or by default the mean
  // cross entropy against mb.targets (ignore index -100). At pp == 1 ids map to the loss.
  Tensor forward(const Tensor& x, const pipeline::MicroBatch& mb) override;

  // ---- heads on the final hidden states h (b,T,C), last stage only -------------------------
  // Mean cross entropy of the logits against targets (b,T) over the non-ignored positions.
  Tensor lm_loss(const Tensor& h, const Tensor& targets, int64_t ignore_index = -100) const;
  // log softmax(logits / temperature)[target] per position (b,T), 0 where the target is
  // ignore_index; over the real vocabulary (padded rows never count), or only its first
  // vocab_limit ids when 0 < vocab_limit (the ids sampling may draw). Differentiable.
  Tensor token_logprobs(const Tensor& h, const Tensor& targets, double temperature = 1.0,
                        int64_t vocab_limit = 0, int64_t ignore_index = -100) const;
  // Entropy of softmax(logits / temperature) per position (b,T), over the same vocabulary as
  // token_logprobs. Differentiable.
  Tensor entropy(const Tensor& h, double temperature = 1.0, int64_t vocab_limit = 0) const;
  // Logits over the real vocabulary (b,T,V), gathered over the TP group (every rank gets all).
  Tensor logits(const Tensor& h) const;

  // ---- whole model (pp == 1) ---------------------------------------------------------------
  // ids (B,T) I64 with T <= block_size -> the final hidden states ln_f(x) (B,T,C).
  Tensor hidden_states(const Tensor& ids);
  // logits (B,T,V) over the real vocabulary (config.logits_size() columns).
  Tensor forward(const Tensor& ids) { return logits(hidden_states(ids)); }
  // Mean cross entropy of forward(ids) against targets (B,T) over the non-ignored positions.
  Tensor loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index = -100);

  // ---- incremental inference (any layout; no autograd, eval mode or dropout 0) -------------
  // A cache for this rank's blocks and heads; pad: each row's left padding (KVCache.h), empty
  // for none. capacity (slots) is at most block_size + the largest padding.
  KVCache new_cache(int64_t batch, int64_t capacity, std::vector<int64_t> pad = {}) const;
  // First stage: ids (B,T) for the slots [cache.length(), +T); other stages: the previous stage's
  // hidden states (B,T,C). Row b's tokens sit at positions [cache.length() - pad[b], +T) and
  // attend only to its own non-padding slots (padding slots hold any valid id). Returns (B,T,C)
  // hidden states, or on the last stage the logits (B,T,V) over the real vocabulary (last_only:
  // (B,1,V)), equal to forward(the row's tokens so far) at those positions up to rounding.
  // Advances the cache by T.
  Tensor forward_cached(const Tensor& x, KVCache& cache, bool last_only = false);

  const GPTConfig& config() const { return config_; }
  Communicator& tp() const { return *tp_; }
  Communicator* pp() const { return pp_; }
  int stage() const { return stage_; }
  int num_stages() const { return num_stages_; }
  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == num_stages_ - 1; }
  std::pair<int64_t, int64_t> layers() const { return layers_; }
  Shape activation_shape(int64_t b, int64_t T) const { return {b, T, config_.n_embd}; }
  // wte.weight on the first stage and (tied, pp > 1) the last stage's copy; undefined elsewhere.
  Tensor tied_weight() const;
  int64_t real_vocab() const { return config_.logits_size(); }
  const tp::VocabPartition& vocab_partition() const { return part_; }

 protected:
  // The next dropout key of a call outside a pipeline schedule (a fresh micro-batch each call).
  DropoutKey next_key() { return {key_.step, auto_micro_++}; }
  Tensor run_stage(const Tensor& x, const Tensor& ids, DropoutKey key);

 private:
  Tensor embed(const Tensor& ids, tp::TensorParallelRng& rng);  // (b,T) -> (b,T,C)
  // The rotary angles of positions [start, start + T) (undefined with learned positions).
  RopeTables rope_for(int64_t start, int64_t T) const;
  void key_layer(tp::TensorParallelRng& rng, DropoutKey key, int64_t layer) const;
  const tp::VocabParallelEmbedding& head() const;
  // The vocabulary partition restricted to the first vocab_limit ids (0: the real vocabulary).
  tp::VocabPartition limited(int64_t vocab_limit) const;
  // Local logits / temperature over the limited vocabulary's columns of this rank: at tp = 1
  // exactly the limited vocabulary, else every local column (the caller masks the rest).
  Tensor scaled_logits(const Tensor& h, double temperature, const tp::VocabPartition& p) const;

  GPTConfig config_;
  std::shared_ptr<Communicator> own_tp_;  // a one-rank group when the layout has none
  Communicator* tp_;
  Communicator* pp_;
  int stage_ = 0, num_stages_ = 1;
  std::pair<int64_t, int64_t> layers_;
  tp::VocabPartition part_;
  tp::TensorParallelRng rng_;
  uint64_t dropout_seed_ = 0;
  DropoutKey key_;
  int64_t auto_micro_ = 0;
  Recompute recompute_ = Recompute::None;
  bool has_lora_ = false;
  double lora_dropout_ = 0.0;
  std::vector<double> inv_freq_;                      // rotary frequencies (rope only)
  DType dtype_;
  Device device_;
  std::unique_ptr<tp::VocabParallelEmbedding> wte_;  // first stage; last stage's tied copy
  std::unique_ptr<Embedding> wpe_;                   // first stage, learned positions
  std::vector<std::unique_ptr<Block>> blocks_;
  std::unique_ptr<Norm> ln_f_;                       // last stage
  std::unique_ptr<tp::VocabParallelEmbedding> lm_head_;  // untied head, last stage
};

}  // namespace loom::models

// ParallelGpt (see ParallelGpt.h): one TP x PP rank's share of a GPT-2 model. The op sequence is
// GPT::loss's (wte(ids) + wpe(pos), dropout, the blocks, ln_f, head, cross entropy) with the TP
// building blocks in place of the single-process layers: vocab-parallel embedding and logits,
// tp::ParallelBlock, vocab-parallel cross entropy. Every piece is registered under the GPT's
// parameter name with the ShardSpec that locates it in the logical tensor, so load_from() and
// the tests slice full tensors with the same extract_shard() a checkpoint writer uses.
#include "parallel/model/ParallelGpt.h"

#include <algorithm>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"
#include "parallel/pipeline/GptStage.h"

namespace loom::pipeline {

namespace {

// The vocabulary tables, whose sources may carry another layout's padding rows.
bool is_vocab_table(const std::string& name) {
  return name == "wte.weight" || name == "lm_head.weight";
}

tp::VocabPartition make_partition(int64_t padded, int64_t vocab, const Communicator& tp) {
  LOOM_CHECK(vocab >= 1 && vocab <= padded && padded % tp.size() == 0,
             "ParallelGpt: expected 1 <= vocab_size <= config.vocab_size (the padded row count) ",
             "and config.vocab_size divisible by the TP size ", tp.size(), ", got vocab_size ",
             vocab, " and config.vocab_size ", padded);
  tp::VocabPartition p;
  p.vocab_size = vocab;
  p.padded_size = padded;
  const int64_t local = padded / tp.size();
  p.start = local * tp.rank();
  p.end = p.start + local;
  return p;
}

const models::GPTConfig& checked(const models::GPTConfig& c, int stage, int pp) {
  c.validate();
  LOOM_CHECK(pp >= 1 && stage >= 0 && stage < pp, "ParallelGpt: expected 0 <= stage < pp, got ",
             "stage ", stage, " and pp ", pp);
  return c;
}

// A 64-bit mix (splitmix64's finaliser) of the run seed and a dropout key: distinct keys give
// unrelated Philox keys, so every (step, micro-batch, layer) has a stream of its own.
uint64_t stream_seed(uint64_t seed, int64_t step, int64_t micro_batch, int64_t layer) {
  uint64_t h = seed;
  for (uint64_t v : {uint64_t(step), uint64_t(micro_batch), uint64_t(layer)}) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
  }
  return h;
}

}  // namespace

ParallelGpt::ParallelGpt(const models::GPTConfig& config, int64_t vocab_size, Communicator& tp,
                         int stage, int pp, uint64_t seed, DType dtype, Device device)
    : config_(checked(config, stage, pp)),
      vocab_size_(vocab_size),
      tp_(tp),
      stage_(stage),
      pp_(pp),
      layers_(stage_layers(config.n_layer, pp, stage)),
      rng_(seed, tp.rank()),
      seed_(seed),
      part_(make_partition(config.vocab_size, vocab_size, tp)) {
  const int64_t C = config_.n_embd, V = config_.vocab_size;
  const bool tied_copy = is_last() && config_.tie_embeddings && pp_ > 1;
  const bool lead = tp_.rank() == 0;  // owns the TP-replicated tensors
  if (is_first() || tied_copy) {
    wte_ = std::make_unique<tp::VocabParallelEmbedding>(part_, C, tp_, dtype, device);
    add_piece("wte.weight", wte_->weight(), ShardSpec::row_range({V, C}, part_.start, part_.end),
              /*owner=*/!tied_copy);
  }
  if (is_first()) {
    wpe_ = Tensor::zeros({config_.block_size, C}, dtype, device);
    add_piece("wpe.weight", wpe_, ShardSpec::whole(wpe_.shape()), lead);
  }
  for (int64_t i = layers_.first; i < layers_.second; ++i) {
    blocks_.push_back(std::make_unique<tp::ParallelBlock>(C, config_.n_head, tp_, config_.dropout,
                                                          config_.bias, dtype, device));
    add_block_pieces(i, *blocks_.back());
  }
  if (is_last()) {
    ln_f_w_ = Tensor::ones({C}, dtype, device);
    add_piece("ln_f.weight", ln_f_w_, ShardSpec::whole({C}), lead);
    if (config_.bias) {
      ln_f_b_ = Tensor::zeros({C}, dtype, device);
      add_piece("ln_f.bias", ln_f_b_, ShardSpec::whole({C}), lead);
    }
    if (!config_.tie_embeddings) {
      lm_head_ = std::make_unique<tp::VocabParallelEmbedding>(part_, C, tp_, dtype, device);
      add_piece("lm_head.weight", lm_head_->weight(),
                ShardSpec::row_range({V, C}, part_.start, part_.end), /*owner=*/true);
    }
  }
}

int64_t ParallelGpt::local_parameters(const models::GPTConfig& c, int tp, int stage, int pp) {
  const int64_t C = c.n_embd, b = c.bias ? 1 : 0;
  const auto [begin, end] = stage_layers(c.n_layer, pp, stage);
  // Per block: two layer norms and the row-parallel biases whole; qkv, fc (with their biases)
  // and the attn/mlp output weights split over TP.
  const int64_t whole = 2 * (C + b * C) + 2 * b * C;
  const int64_t split = (3 * C * C + b * 3 * C + C * C + 4 * C * C + b * 4 * C + 4 * C * C) / tp;
  int64_t n = (end - begin) * (whole + split);
  const int64_t vocab_rows = c.vocab_size / tp * C;
  const bool first = stage == 0, last = stage == pp - 1;
  if (first) n += vocab_rows + c.block_size * C;
  if (last) n += C + b * C + ((!c.tie_embeddings || pp > 1) ? vocab_rows : 0);  // head or tied copy
  return n;
}

void ParallelGpt::add_piece(const std::string& name, const Tensor& t, const ShardSpec& spec,
                            bool owner) {
  LOOM_INTERNAL_ASSERT(t.shape() == spec.local_shape(), "ParallelGpt: piece ", name, " of shape ",
                       t.shape(), " does not match its spec ", spec.str());
  Tensor p = register_parameter(name, t);
  pieces_.push_back(ParallelParam{name, p, spec, owner});
}

void ParallelGpt::add_block_pieces(int64_t layer, tp::ParallelBlock& b) {
  const int64_t C = config_.n_embd;
  const int r = tp_.rank(), n = tp_.size();
  const bool lead = r == 0;
  const std::string pre = "blocks." + std::to_string(layer) + ".";
  add_piece(pre + "ln_1.weight", b.ln1_weight(), ShardSpec::whole({C}), lead);
  if (config_.bias) add_piece(pre + "ln_1.bias", b.ln1_bias(), ShardSpec::whole({C}), lead);
  add_piece(pre + "attn.qkv.weight", b.attn().qkv().weight(),
            ShardSpec::rows({3 * C, C}, /*stacked=*/3, r, n), true);
  if (config_.bias)
    add_piece(pre + "attn.qkv.bias", b.attn().qkv().bias(), ShardSpec::rows({3 * C}, 3, r, n),
              true);
  add_piece(pre + "attn.proj.weight", b.attn().proj().weight(), ShardSpec::split({C, C}, 1, r, n),
            true);
  if (config_.bias)
    add_piece(pre + "attn.proj.bias", b.attn().proj().bias(), ShardSpec::whole({C}), lead);
  add_piece(pre + "ln_2.weight", b.ln2_weight(), ShardSpec::whole({C}), lead);
  if (config_.bias) add_piece(pre + "ln_2.bias", b.ln2_bias(), ShardSpec::whole({C}), lead);
  add_piece(pre + "mlp.fc.weight", b.mlp().fc().weight(), ShardSpec::rows({4 * C, C}, 1, r, n),
            true);
  if (config_.bias)
    add_piece(pre + "mlp.fc.bias", b.mlp().fc().bias(), ShardSpec::rows({4 * C}, 1, r, n), true);
  add_piece(pre + "mlp.proj.weight", b.mlp().proj().weight(),
            ShardSpec::split({C, 4 * C}, 1, r, n), true);
  if (config_.bias)
    add_piece(pre + "mlp.proj.bias", b.mlp().proj().bias(), ShardSpec::whole({C}), lead);
}

std::vector<std::string> ParallelGpt::load_problems(
    const std::map<std::string, Tensor>& source) const {
  std::vector<std::string> problems;
  for (const ParallelParam& p : pieces_) {
    auto it = source.find(p.name);
    if (it == source.end() || !it->second.defined()) {
      problems.push_back("missing '" + p.name + "'");
      continue;
    }
    const Tensor& src = it->second;
    const bool ok = is_vocab_table(p.name)
                        ? src.dim() == 2 && src.size(1) == config_.n_embd &&
                              src.size(0) >= vocab_size_
                        : src.shape() == p.spec.logical;
    if (!ok) {
      const std::string want = is_vocab_table(p.name)
                                   ? detail::str_cat("(>= ", vocab_size_, ", ", config_.n_embd, ")")
                                   : shape_str(p.spec.logical);
      problems.push_back(detail::str_cat("'", p.name, "' expected shape ", want, ", got ",
                                         shape_str(src.shape())));
    }
  }
  return problems;
}

void ParallelGpt::load_from(const std::map<std::string, Tensor>& source) {
  const std::vector<std::string> problems = load_problems(source);
  if (!problems.empty()) {
    std::string msg = "ParallelGpt.load_from: expected every parameter of stage " +
                      std::to_string(stage_) + " with its logical shape, got " +
                      std::to_string(problems.size()) + " problem(s): ";
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw ValueError(msg);
  }
  NoGradGuard no_grad;
  for (const ParallelParam& p : pieces_) {
    const Tensor src = source.at(p.name).detach();
    Tensor dst = p.tensor.detach();
    if (is_vocab_table(p.name)) {  // real rows [start, min(end, vocab)); padding rows zero
      dst.zero_();
      const int64_t stop = std::min(part_.end, vocab_size_);
      if (stop > part_.start)
        dst.narrow(0, 0, stop - part_.start)
            .copy_(src.narrow(0, part_.start, stop - part_.start));
    } else {
      dst.copy_(extract_shard(src, p.spec));
    }
  }
}

Tensor ParallelGpt::embed(const Tensor& ids, bool training) {
  LOOM_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::I64,
             "ParallelGpt.forward: expected ids of shape (b,T) and dtype i64 on the first stage");
  const int64_t T = ids.size(1);
  LOOM_CHECK(T >= 1 && T <= config_.block_size, "ParallelGpt.forward: expected T in [1, ",
             config_.block_size, "], got ", T);
  Tensor pos = Tensor::arange(T, DType::I64, ids.device());
  Tensor x = wte_->forward(ids) + embedding(wpe_, pos);  // (b,T,C) + (T,C)
  // Outside any TP region: the mask must be equal on every TP rank.
  return dropout(x, config_.dropout, rng_.replicated(), training);
}

Tensor ParallelGpt::head_loss(const Tensor& h, const Tensor& targets) const {
  LOOM_CHECK(targets.defined() && targets.dim() == 2 && targets.size(0) == h.size(0) &&
                 targets.size(1) == h.size(1),
             "ParallelGpt.forward: expected targets of shape (", h.size(0), ",", h.size(1),
             ") on the last stage");
  const tp::VocabParallelEmbedding& head = lm_head_ ? *lm_head_ : *wte_;
  Tensor logits = head.logits(layer_norm(h, ln_f_w_, ln_f_b_));  // (b,T,V/tp)
  const int64_t N = targets.numel();
  return tp::vocab_parallel_cross_entropy(logits.reshape({N, part_.local_size()}),
                                          targets.reshape({N}), part_, tp_, -100);
}

Tensor ParallelGpt::forward(const Tensor& x, const MicroBatch& mb) {
  const bool training = is_training() && config_.dropout > 0.0;
  const bool keyed = training && mb.index >= 0;
  LOOM_CHECK(!training || keyed || pp_ == 1, "ParallelGpt.forward: dropout with pipeline ",
             "parallelism (pp = ", pp_, ") needs micro-batches with their index in the step ",
             "(MicroBatch.index), got index ", mb.index);
  // Keyed dropout: the embedding is "layer" 0, block i is layer i + 1.
  auto key = [&](int64_t layer) {
    if (keyed) rng_.set_state({stream_seed(seed_, step_, mb.index, layer), 0, 0});
  };
  Tensor h = x;
  if (is_first()) {
    key(0);
    h = embed(mb.ids, training);
  }
  LOOM_CHECK(h.defined() && h.dim() == 3 && h.size(2) == config_.n_embd,
             "ParallelGpt.forward: expected an activation of shape (b,T,", config_.n_embd,
             "), got ", h.defined() ? shape_str(h.shape()) : std::string("none"));
  for (size_t i = 0; i < blocks_.size(); ++i) {
    key(layers_.first + int64_t(i) + 1);
    h = blocks_[i]->forward(h, rng_, training);
  }
  return is_last() ? head_loss(h, mb.targets) : h;
}

std::vector<Tensor> ParallelGpt::norm_sharded() const {
  std::vector<Tensor> out;
  for (const ParallelParam& p : pieces_)
    if (p.owner && !p.spec.is_whole()) out.push_back(p.tensor);
  return out;
}

std::vector<Tensor> ParallelGpt::norm_replicated() const {
  std::vector<Tensor> out;
  for (const ParallelParam& p : pieces_)
    if (p.owner && p.spec.is_whole()) out.push_back(p.tensor);
  return out;
}

Tensor ParallelGpt::tied_weight() const {
  // wte_ exists on the first stage and, tied with pp > 1, as the last stage's copy.
  return wte_ ? wte_->weight() : Tensor();
}

}  // namespace loom::pipeline

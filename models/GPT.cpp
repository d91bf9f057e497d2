// The GPT model's stages, heads and KV-cached inference (see GPT.h); the blocks are in Block.cpp.
// At tp = 1 every tensor-parallel mapping is the identity and the vocab-parallel head is the plain
// one, so one process runs the plain model.
#include "models/GPT.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Nn.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"
#include "parallel/comm/FakeCommunicator.h"
#include "parallel/tensor/Mappings.h"

namespace loom::models {

std::pair<int64_t, int64_t> stage_layers(int64_t n_layer, int pp, int stage) {
  LOOM_CHECK(pp >= 1 && stage >= 0 && stage < pp, "stage_layers: expected 0 <= stage < pp, got ",
             "stage ", stage, " and pp ", pp);
  LOOM_CHECK(int64_t(pp) <= n_layer, "stage_layers: expected at most n_layer = ", n_layer,
             " pipeline stages, got pp = ", pp);
  const int64_t base = n_layer / pp, extra = n_layer % pp;
  const int64_t begin = stage * base + std::min<int64_t>(stage, extra);
  return {begin, begin + base + (stage < extra ? 1 : 0)};
}

// ---- GPT -----------------------------------------------------------------------------------

namespace {

const GPTConfig& validated(const GPTConfig& c) {
  c.validate();
  return c;
}

tp::VocabPartition make_partition(const GPTConfig& c, const Communicator& tp) {
  LOOM_CHECK(c.vocab_size % tp.size() == 0, "GPT: expected the padded vocabulary (",
             c.vocab_size, " rows) divisible by the TP size ", tp.size(),
             "; hint: config::padded_vocab_size pads it");
  tp::VocabPartition p;
  p.vocab_size = c.logits_size();
  p.padded_size = c.vocab_size;
  const int64_t local = c.vocab_size / tp.size();
  p.start = local * tp.rank();
  p.end = p.start + local;
  return p;
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

GPT::GPT(const GPTConfig& config, Layout layout, DType dtype, Device device)
    : config_(validated(config)),
      tp_(layout.tp),
      pp_(layout.pp),
      rng_(0, layout.tp ? layout.tp->rank() : 0),
      dtype_(dtype),
      device_(device) {
  LOOM_CHECK(is_floating(dtype), "GPT: expected a floating parameter dtype, got ",
             dtype_name(dtype));
  if (tp_ == nullptr) {
    own_tp_ = FakeCommunicator::create_world(1)[0];
    tp_ = own_tp_.get();
  }
  stage_ = pp_ ? pp_->rank() : 0;
  num_stages_ = pp_ ? pp_->size() : 1;
  layers_ = stage_layers(config_.n_layer, num_stages_, stage_);
  part_ = make_partition(config_, *tp_);
  const int64_t C = config_.n_embd;
  const double std = config_.init_std;
  const bool lead = tp_->rank() == 0;  // owns the TP-replicated tensors
  const bool tied_copy = is_last() && config_.tie_embeddings && num_stages_ > 1;
  if (is_first() || tied_copy) {
    wte_ = std::make_unique<tp::VocabParallelEmbedding>(part_, C, *tp_, std, !tied_copy, dtype,
                                                        device);
    register_module("wte", *wte_);
  }
  if (is_first() && config_.position == PositionKind::Learned) {
    wpe_ = std::make_unique<Embedding>(config_.block_size, C, lead, std, dtype, device);
    register_module("wpe", *wpe_);
  }
  if (config_.position == PositionKind::Rope) inv_freq_ = rope_inv_freq(config_);
  for (int64_t i = layers_.first; i < layers_.second; ++i) {
    blocks_.push_back(std::make_unique<Block>(config_, *tp_, dtype, device));
    register_module("blocks." + std::to_string(i), *blocks_.back());
  }
  if (is_last()) {
    ln_f_ = std::make_unique<Norm>(C, config_.norm, config_.bias, lead, config_.norm_eps, dtype,
                                   device);
    register_module("ln_f", *ln_f_);
    if (!config_.tie_embeddings) {
      lm_head_ = std::make_unique<tp::VocabParallelEmbedding>(part_, C, *tp_, std, true, dtype,
                                                              device);
      register_module("lm_head", *lm_head_);
    }
  }
}

GPT::~GPT() = default;

int64_t GPT::local_parameters(const GPTConfig& c, int tp, int stage, int pp) {
  const int64_t C = c.n_embd, F = c.ffn_size(), b = c.bias ? 1 : 0;
  const int64_t qb = c.has_qkv_bias() ? 1 : 0, kv_out = 2 * c.kv_heads() * c.head_dim();
  const int64_t norm = C + (c.norm == NormKind::LayerNorm ? b * C : 0);
  const int64_t up = c.mlp == MlpKind::SwiGLU ? 2 * F : F;
  const auto [begin, end] = stage_layers(c.n_layer, pp, stage);
  // Per block: the norms and the row-parallel biases whole; q, kv (unless replicated because
  // tp > n_kv_head), attn.proj, mlp.fc (with their biases) and mlp.proj split over TP.
  int64_t whole = 2 * norm + 2 * b * C;
  int64_t split = C * C + qb * C + C * C + C * up + b * up + F * C;
  if (c.kv_heads() % tp == 0)
    split += C * kv_out + qb * kv_out;
  else
    whole += C * kv_out + qb * kv_out;
  int64_t n = (end - begin) * (whole + split / tp);
  const int64_t vocab_rows = c.vocab_size / tp * C;
  const bool first = stage == 0, last = stage == pp - 1;
  if (first) n += vocab_rows + (c.position == PositionKind::Learned ? c.block_size * C : 0);
  if (last) n += norm + ((!c.tie_embeddings || pp > 1) ? vocab_rows : 0);  // head or tied copy
  return n;
}

int64_t GPT::local_lora_parameters(const GPTConfig& c, const std::vector<std::string>& targets,
                                   int64_t r, int tp, int stage, int pp) {
  const int64_t C = c.n_embd, F = c.ffn_size(), kv_out = 2 * c.kv_heads() * c.head_dim();
  const int64_t up = c.mlp == MlpKind::SwiGLU ? 2 * F : F;
  const int64_t column_kv = c.kv_heads() % tp == 0 ? tp : 1;  // replicated: whole A and B
  // (layer, in, out, how B / A split: 'c' column, 'r' row)
  const std::vector<std::tuple<std::string, int64_t, int64_t, char>> layers = {
      {"attn.qkv", C, 3 * C, 'c'}, {"attn.q", C, C, 'c'},   {"attn.kv", C, kv_out, 'k'},
      {"attn.proj", C, C, 'r'},    {"mlp.fc", C, up, 'c'},  {"mlp.proj", F, C, 'r'}};
  const std::vector<std::string> here = Block::linear_names(c);
  int64_t per_block = 0;
  for (const auto& [name, in, out, how] : layers) {
    if (std::find(here.begin(), here.end(), name) == here.end()) continue;
    bool wanted = false;
    for (const std::string& t : targets) wanted = wanted || lora_target_matches(t, name);
    if (!wanted) continue;
    const int64_t split = how == 'k' ? column_kv : tp;
    per_block += how == 'r' ? r * (in / tp) + out * r : r * in + (out / split) * r;
  }
  const auto [begin, end] = stage_layers(c.n_layer, pp, stage);
  return (end - begin) * per_block;
}

void GPT::init_weights(uint64_t seed) {
  init_parameters(seed);
  dropout_seed_ = seed;
}

bool is_lora_param(const std::string& name) {
  auto ends = [&name](const std::string& t) {
    return name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0;
  };
  return ends(".lora_A") || ends(".lora_B");
}

void GPT::add_lora(const tp::LoraOptions& o, const std::vector<std::string>& targets,
                   uint64_t seed) {
  LOOM_CHECK(!has_lora_, "GPT.add_lora: expected a model without adapters, got one with them");
  tp::check_lora_options(o);
  const std::vector<std::string> layers = Block::linear_names(config_);
  std::string known;
  for (const std::string& l : layers) known += (known.empty() ? "" : ", ") + l;
  LOOM_CHECK(!targets.empty(), "lora.target_modules: expected at least one of ", known);
  for (const std::string& t : targets) {
    bool found = false;
    for (const std::string& l : layers) found = found || lora_target_matches(t, l);
    LOOM_CHECK(found, "lora.target_modules: expected names of this architecture's linear layers (",
               known, ", or their last part), got \"", t, "\"");
  }
  for (auto& b : blocks_) b->add_lora(o, targets);
  init_parameters(seed, is_lora_param);
  freeze([](const std::string& name) { return !is_lora_param(name); });
  has_lora_ = true;
  lora_dropout_ = o.dropout;
}

void GPT::key_layer(tp::TensorParallelRng& rng, DropoutKey key, int64_t layer) const {
  rng.set_state({stream_seed(dropout_seed_, key.step, key.micro_batch, layer), 0, 0});
}

Tensor GPT::embed(const Tensor& ids, tp::TensorParallelRng& rng) {
  LOOM_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::I64,
             "GPT.forward: expected ids of shape (B,T) and dtype i64, got ",
             ids.defined() ? shape_str(ids.shape()) : std::string("none"));
  const int64_t T = ids.size(1);
  LOOM_CHECK(T >= 1 && T <= config_.block_size, "GPT.forward: expected sequence length T in [1, ",
             config_.block_size, "] (block_size), got ", T);
  Tensor x = wte_->forward(ids);  // (B,T,C)
  if (wpe_) x = x + wpe_->forward(Tensor::arange(T, DType::I64, ids.device()));  // + (T,C)
  // Outside any TP region: the mask must be equal on every TP rank.
  return dropout(x, config_.dropout, rng.replicated(), is_training());
}

RopeTables GPT::rope_for(int64_t start, int64_t T) const {
  if (config_.position != PositionKind::Rope) return {};
  return rope_tables(inv_freq_, start, T, dtype_, device_);
}

Tensor GPT::run_stage(const Tensor& x, const Tensor& ids, DropoutKey key) {
  // Keyed streams whenever some dropout draws: the model's, or only the LoRA adapters'.
  const bool drop = is_training() && (config_.dropout > 0.0 || lora_dropout_ > 0.0);
  Tensor h = x;
  if (is_first()) {
    if (drop) key_layer(rng_, key, 0);  // the embedding is "layer" 0, block i is layer i + 1
    h = embed(ids, rng_);
  }
  LOOM_CHECK(h.defined() && h.dim() == 3 && h.size(2) == config_.n_embd,
             "GPT.forward: expected an activation of shape (B,T,", config_.n_embd, "), got ",
             h.defined() ? shape_str(h.shape()) : std::string("none"));
  const RopeTables rope = rope_for(0, h.size(1));
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (drop) key_layer(rng_, key, layers_.first + int64_t(i) + 1);
    h = blocks_[i]->forward(h, rng_, recompute_, rope);
  }
  return is_last() ? ln_f_->forward(h) : h;
}

Tensor GPT::forward(const Tensor& x, const pipeline::MicroBatch& mb) {
  const DropoutKey key{key_.step, mb.index >= 0 ? mb.index : next_key().micro_batch};
  Tensor h = run_stage(x, mb.ids, key);
  if (!is_last()) return h;
  return mb.objective ? mb.objective(h) : lm_loss(h, mb.targets);
}

const tp::VocabParallelEmbedding& GPT::head() const {
  LOOM_CHECK(is_last(), "GPT: the LM head lives on the last pipeline stage (", num_stages_ - 1,
             "), not on stage ", stage_);
  return lm_head_ ? *lm_head_ : *wte_;
}

Tensor GPT::lm_loss(const Tensor& h, const Tensor& targets, int64_t ignore_index) const {
  LOOM_CHECK(targets.defined() && targets.dim() == 2 && targets.size(0) == h.size(0) &&
                 targets.size(1) == h.size(1),
             "GPT.loss: expected targets of shape (", h.size(0), ",", h.size(1), "), got ",
             targets.defined() ? shape_str(targets.shape()) : std::string("none"));
  const int64_t N = targets.numel();
  if (h.device().is_cpu() && (h.dtype() == DType::F32 || h.dtype() == DType::F64)) {
    // Head and cross entropy fused: the (N, V/tp) logits are never materialised at once.
    return tp::vocab_parallel_linear_cross_entropy(h.reshape({N, h.size(-1)}), head().weight(),
                                                   targets.reshape({N}), part_, *tp_,
                                                   ignore_index);
  }
  Tensor logits = head().logits(h);  // (B,T,V/tp)
  return tp::vocab_parallel_cross_entropy(logits.reshape({N, logits.size(-1)}),
                                          targets.reshape({N}), part_, *tp_, ignore_index);
}

tp::VocabPartition GPT::limited(int64_t vocab_limit) const {
  tp::VocabPartition p = part_;
  LOOM_CHECK(vocab_limit >= 0, "GPT: expected vocab_limit >= 0, got ", vocab_limit);
  if (vocab_limit > 0) p.vocab_size = std::min(vocab_limit, part_.vocab_size);
  return p;
}

Tensor GPT::scaled_logits(const Tensor& h, double temperature, const tp::VocabPartition& p) const {
  LOOM_CHECK(temperature > 0.0, "GPT: expected temperature > 0, got ", temperature);
  Tensor x = head().logits(h);  // (B,T,Vl); at tp = 1 the real vocabulary
  if (tp_->size() == 1 && x.size(-1) > p.vocab_size) x = x.narrow(-1, 0, p.vocab_size);
  return temperature == 1.0 ? x : x * (1.0 / temperature);
}

Tensor GPT::token_logprobs(const Tensor& h, const Tensor& targets, double temperature,
                           int64_t vocab_limit, int64_t ignore_index) const {
  LOOM_CHECK(targets.defined() && targets.dim() == 2 && targets.size(0) == h.size(0) &&
                 targets.size(1) == h.size(1),
             "GPT.token_logprobs: expected targets of shape (", h.size(0), ",", h.size(1),
             "), got ", targets.defined() ? shape_str(targets.shape()) : std::string("none"));
  const tp::VocabPartition p = limited(vocab_limit);
  Tensor logits = scaled_logits(h, temperature, p);
  const int64_t N = targets.numel();
  Tensor nll = tp::vocab_parallel_cross_entropy(logits.reshape({N, logits.size(-1)}),
                                                targets.reshape({N}), p, *tp_, ignore_index,
                                                Reduction::None);  // (N), 0 where ignored
  return neg(nll).reshape(targets.shape());
}

Tensor GPT::entropy(const Tensor& h, double temperature, int64_t vocab_limit) const {
  const tp::VocabPartition p = limited(vocab_limit);
  Tensor x = scaled_logits(h, temperature, p);
  Tensor valid;  // (Vl) 1 for this rank's columns inside the vocabulary, 0 for the rest
  if (tp_->size() > 1 && p.end > p.vocab_size) {
    Tensor cols = Tensor::arange(p.local_size(), DType::I64, x.device()) + double(p.start);
    valid = lt(cols, Tensor::scalar(double(p.vocab_size), DType::I64, x.device())).to(x.dtype());
    x = x * valid;  // excluded logits 0 (their probability is removed below)
  }
  // H = logsumexp(x) - sum p x with a detached max over every rank's columns.
  Tensor m = max(x.detach(), -1).contiguous();  // (B,T)
  if (tp_->size() > 1) tp_->all_reduce(m, ReduceOp::Max);
  Tensor e = exp(x - m.unsqueeze(-1));
  if (valid.defined()) e = e * valid;
  Tensor s = tp::reduce_from_tp(sum(e, {-1}), *tp_);       // (B,T)
  Tensor ex = tp::reduce_from_tp(sum(e * x, {-1}), *tp_);  // (B,T)
  return log(s) + m - ex / s;
}

Tensor GPT::logits(const Tensor& h) const {
  Tensor local = head().logits(h);
  if (tp_->size() == 1) return local;  // already the real vocabulary
  Tensor full = tp::gather_from_tp(local, *tp_);  // (..., padded)
  return full.narrow(-1, 0, real_vocab());
}

Tensor GPT::hidden_states(const Tensor& ids) {
  LOOM_CHECK(num_stages_ == 1, "GPT.hidden_states: the whole model runs on one pipeline stage; ",
             "this rank is stage ", stage_, " of ", num_stages_, " (use the pipeline schedule)");
  return run_stage(Tensor(), ids, next_key());
}

Tensor GPT::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) {
  LOOM_CHECK(targets.defined() && targets.shape() == ids.shape(), "GPT.loss: expected targets ",
             "of shape ", ids.shape(), ", got ",
             targets.defined() ? shape_str(targets.shape()) : std::string("none"));
  return lm_loss(hidden_states(ids), targets, ignore_index);
}

KVCache GPT::new_cache(int64_t batch, int64_t capacity, std::vector<int64_t> pad) const {
  const int64_t max_pad = pad.empty() ? 0 : *std::max_element(pad.begin(), pad.end());
  LOOM_CHECK(capacity >= 1 && capacity <= config_.block_size + max_pad,
             "GPT.new_cache: expected capacity in [1, ", config_.block_size + max_pad,
             "] (block_size + the largest padding), got ", capacity);
  const int64_t kv_heads = std::max<int64_t>(1, config_.kv_heads() / tp_->size());
  return KVCache(int64_t(blocks_.size()), kv_heads, config_.head_dim(), batch, capacity, dtype_,
                 device_, std::move(pad));
}

namespace {

// The positions of slots [past, past + T) of every row of a left-padded cache, (B*T) row-major;
// padding slots get position 0 (their outputs are never read).
std::vector<int64_t> slot_positions(const KVCache& cache, int64_t T) {
  std::vector<int64_t> pos;
  pos.reserve(size_t(cache.batch() * T));
  for (int64_t pad : cache.padding())
    for (int64_t t = cache.length(); t < cache.length() + T; ++t)
      pos.push_back(std::max<int64_t>(0, t - pad));
  return pos;
}

// Additive attention bias (B,1,T,L) for queries in slots [past, past+T) over keys in slots
// [0, L = past+T) of a left-padded cache: -inf where a key is in the future or is padding seen
// from a real token (a padding query sees the padding before it, so every row stays finite).
Tensor padding_bias(const KVCache& cache, int64_t T, DType dtype, Device device) {
  const int64_t B = cache.batch(), past = cache.length(), L = past + T;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> bias(size_t(B * T * L), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pad = cache.padding()[size_t(b)];
    for (int64_t i = 0; i < T; ++i) {
      const int64_t q = past + i;
      for (int64_t j = 0; j < L; ++j)
        if (j > q || (j < pad && q >= pad)) bias[size_t((b * T + i) * L + j)] = -inf;
    }
  }
  return Tensor::from_vector(bias, {B, 1, T, L}).to(dtype).to(device);
}

}  // namespace

Tensor GPT::forward_cached(const Tensor& x, KVCache& cache, bool last_only) {
  LOOM_CHECK(!is_training() || config_.dropout == 0.0,
             "GPT.forward_cached: expected eval mode (dropout ", config_.dropout,
             " is not applied with a KV cache); call model.eval() first");
  LOOM_CHECK(cache.num_layers() == int64_t(blocks_.size()), "GPT.forward_cached: expected a ",
             "cache of ", blocks_.size(), " layers (GPT.new_cache), got ", cache.num_layers());
  NoGradGuard no_grad;
  const int64_t past = cache.length(), T = x.size(1);
  // The least padded row reaches the largest position, past + T - 1 - min_pad.
  const int64_t limit = std::min(config_.block_size + cache.min_pad(), cache.capacity());
  LOOM_CHECK(T >= 1 && past + T <= limit && x.size(0) == cache.batch(),
             "GPT.forward_cached: expected (", cache.batch(), ", 1 to ", limit - past,
             ") new positions (", past, " cached, capacity ", cache.capacity(), ", block_size ",
             config_.block_size, "), got ", x.shape());
  // Per-row positions of a padded cache; else every row sits at [past, past + T).
  const std::vector<int64_t> pos =
      cache.padded() ? slot_positions(cache, T) : std::vector<int64_t>();
  Tensor h = x;
  if (is_first()) {
    LOOM_CHECK(x.dim() == 2 && x.dtype() == DType::I64, "GPT.forward_cached: expected ids of ",
               "shape (B,T) and dtype i64 on the first stage, got ", x.shape());
    h = wte_->forward(x);  // (B,T,C)
    if (wpe_ && pos.empty()) h = h + wpe_->weight().narrow(0, past, T);  // + (T,C)
    if (wpe_ && !pos.empty())
      h = h + wpe_->forward(Tensor::from_vector(pos, {x.size(0), T}).to(device_));  // + (B,T,C)
  }
  RopeTables rope;  // (T, D/2) shared by every row, or (B*T, D/2) per row when padded
  if (config_.position == PositionKind::Rope)
    rope = pos.empty() ? rope_for(past, T) : rope_tables_at(inv_freq_, pos, dtype_, device_);
  const Tensor bias = cache.padded() ? padding_bias(cache, T, dtype_, device_) : Tensor();
  for (size_t i = 0; i < blocks_.size(); ++i)
    h = blocks_[i]->forward_cached(h, cache, int64_t(i), rope, bias);
  cache.advance(T);
  if (!is_last()) return h;
  if (last_only) h = h.narrow(1, T - 1, 1);
  return logits(ln_f_->forward(h));  // (B,T,V) or (B,1,V)
}

Tensor GPT::tied_weight() const { return wte_ ? wte_->weight() : Tensor(); }

}  // namespace loom::models

// GPT-2 forward pass and init. Attention uses the fused causal kernel; only when attention dropout
// is active (training, dropout > 0) does it fall back to explicit softmax(q k^T) so that the
// probabilities can be dropped, exactly as nanoGPT / HF GPT-2 do.
#include "models/GPT.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/autograd/GradMode.h"
#include "core/ops/Attention.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/util/Check.h"

namespace loom::models {

// ---- CausalSelfAttention -------------------------------------------------------------------

CausalSelfAttention::CausalSelfAttention(const GPTConfig& c, DType dtype, Device device)
    : n_head_(c.n_head),
      dropout_(c.dropout),
      qkv_(c.n_embd, 3 * c.n_embd, c.bias, dtype, device),
      proj_(c.n_embd, c.n_embd, c.bias, dtype, device) {
  register_module("qkv", qkv_);
  register_module("proj", proj_);
}

Tensor CausalSelfAttention::forward(const Tensor& x, Generator& gen) const {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = n_head_, D = C / H;
  std::vector<Tensor> qkv = split(qkv_.forward(x), C, -1);  // 3 x (B,T,C)
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };
  Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);  // (B,H,T,D)
  const bool drop = is_training() && dropout_ > 0.0;
  Tensor y = drop ? attention_with_dropout(q, k, v, gen)
                  : scaled_dot_product_attention(q, k, v, /*causal=*/true);  // (B,H,T,D)
  y = proj_.forward(y.transpose(1, 2).reshape({B, T, C}));
  return dropout(y, dropout_, gen, is_training());
}

Tensor CausalSelfAttention::attention_with_dropout(const Tensor& q, const Tensor& k,
                                                   const Tensor& v, Generator& gen) const {
  const int64_t T = q.size(2), D = q.size(3);
  Tensor att = matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(double(D)));  // (B,H,T,T)
  Tensor pos = Tensor::arange(T, DType::I64, q.device());
  Tensor future = gt(pos.unsqueeze(0), pos.unsqueeze(1));  // (T,T): key j > query i
  att = masked_fill(att, future, -std::numeric_limits<double>::infinity());
  att = dropout(softmax(att, -1), dropout_, gen, /*training=*/true);
  return matmul(att, v);  // (B,H,T,D)
}

namespace {
// softmax(q keys^T / sqrt(D) + mask) values for queries at positions [past, past+T) over the keys
// at [0, past+T): query i sees key j iff j <= past + i. q (B,H,T,D); keys, values (B,H,past+T,D).
// NB: the fused kernel needs equal query and key lengths, so decoding takes this explicit path.
Tensor attention_over_cache(const Tensor& q, const Tensor& keys, const Tensor& values,
                            int64_t past) {
  const int64_t T = q.size(2), D = q.size(3), L = keys.size(2);
  Tensor att = matmul(q, keys.transpose(2, 3)) * (1.0 / std::sqrt(double(D)));  // (B,H,T,L)
  if (T > 1) {
    Tensor key_pos = Tensor::arange(L, DType::I64, q.device());
    Tensor query_pos = key_pos.narrow(0, past, T);
    Tensor future = gt(key_pos.unsqueeze(0), query_pos.unsqueeze(1));  // (T,L)
    att = masked_fill(att, future, -std::numeric_limits<double>::infinity());
  }
  return matmul(softmax(att, -1), values);  // (B,H,T,D)
}
}  // namespace

Tensor CausalSelfAttention::forward_cached(const Tensor& x, KVCache& cache, int64_t layer) const {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = n_head_, D = C / H;
  std::vector<Tensor> qkv = split(qkv_.forward(x), C, -1);  // 3 x (B,T,C)
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, H, D}).transpose(1, 2); };
  Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);  // (B,H,T,D)
  const int64_t past = cache.length();
  auto [keys, values] = cache.append(layer, k, v);  // (B,H,past+T,D)
  // An empty cache is a plain causal prefill: the fused kernel on the new k, v is exact.
  Tensor y = past == 0 ? scaled_dot_product_attention(q, k, v, /*causal=*/true)
                       : attention_over_cache(q, keys, values, past);  // (B,H,T,D)
  return proj_.forward(y.transpose(1, 2).reshape({B, T, C}));
}

// ---- MLP and Block -------------------------------------------------------------------------

MLP::MLP(const GPTConfig& c, DType dtype, Device device)
    : dropout_(c.dropout),
      fc_(c.n_embd, 4 * c.n_embd, c.bias, dtype, device),
      proj_(4 * c.n_embd, c.n_embd, c.bias, dtype, device) {
  register_module("fc", fc_);
  register_module("proj", proj_);
}

Tensor MLP::forward(const Tensor& x, Generator& gen) const {
  Tensor y = proj_.forward(gelu(fc_.forward(x)));
  return dropout(y, dropout_, gen, is_training());
}

Block::Block(const GPTConfig& c, DType dtype, Device device)
    : ln_1_(c.n_embd, c.bias, dtype, device),
      attn_(c, dtype, device),
      ln_2_(c.n_embd, c.bias, dtype, device),
      mlp_(c, dtype, device) {
  register_module("ln_1", ln_1_);
  register_module("attn", attn_);
  register_module("ln_2", ln_2_);
  register_module("mlp", mlp_);
}

Tensor Block::forward(const Tensor& x, Generator& gen) const {
  Tensor h = x + attn_.forward(ln_1_.forward(x), gen);
  return h + mlp_.forward(ln_2_.forward(h), gen);
}

Tensor Block::forward_cached(const Tensor& x, KVCache& cache, int64_t layer) const {
  // NB: GPT::forward_cached admits only eval mode or dropout 0, so the MLP's dropout is the
  // identity and never draws from this generator.
  Generator no_dropout;
  Tensor h = x + attn_.forward_cached(ln_1_.forward(x), cache, layer);
  return h + mlp_.forward(ln_2_.forward(h), no_dropout);
}

void Block::init(Generator& gen, double std, double residual_std) {
  ln_1_.init();
  attn_.qkv().init(gen, std);
  attn_.proj().init(gen, residual_std);
  ln_2_.init();
  mlp_.fc().init(gen, std);
  mlp_.proj().init(gen, residual_std);
}

// ---- GPT -----------------------------------------------------------------------------------

namespace {
// Key for the dropout stream, so it never overlaps the init stream of the same seed.
constexpr uint64_t kDropoutKey = 0x9E3779B97F4A7C15ull;

const GPTConfig& validated(const GPTConfig& c) {
  c.validate();
  return c;
}
}  // namespace

GPT::GPT(const GPTConfig& config, Generator& init_gen, DType dtype, Device device)
    : config_(validated(config)),
      wte_(config.vocab_size, config.n_embd, dtype, device),
      wpe_(config.block_size, config.n_embd, dtype, device),
      ln_f_(config.n_embd, config.bias, dtype, device),
      dropout_gen_(init_gen.seed() ^ kDropoutKey, 0) {
  LOOM_CHECK(is_floating(dtype), "GPT: expected a floating parameter dtype, got ",
             dtype_name(dtype));
  register_module("wte", wte_);
  register_module("wpe", wpe_);
  for (int64_t i = 0; i < config.n_layer; ++i) {
    blocks_.push_back(std::make_unique<Block>(config, dtype, device));
    register_module("blocks." + std::to_string(i), *blocks_.back());
  }
  register_module("ln_f", ln_f_);
  if (!config.tie_embeddings) {
    lm_head_ = register_parameter(
        "lm_head.weight", Tensor::zeros({config.vocab_size, config.n_embd}, dtype, device));
  }
  init_weights(init_gen);
}

void GPT::init_weights(Generator& gen) {
  const double std = config_.init_std;
  const double residual_std = std / std::sqrt(2.0 * double(config_.n_layer));
  wte_.init(gen, std);
  wpe_.init(gen, std);
  for (auto& b : blocks_) b->init(gen, std, residual_std);
  ln_f_.init();
  if (lm_head_.defined()) {
    NoGradGuard no_grad;
    lm_head_.normal_(gen, 0.0, std);
  }
  // Padded vocabulary rows start (and, untouched by the loss, stay near) zero. Zeroed after the
  // draws, so the generator's sequence is that of the unpadded layout's draws plus the padding.
  const int64_t real = config_.logits_size(), V = config_.vocab_size;
  if (real < V) {
    NoGradGuard no_grad;
    wte_.weight().narrow(0, real, V - real).zero_();
    if (lm_head_.defined()) lm_head_.narrow(0, real, V - real).zero_();
  }
}

const Tensor& GPT::lm_head_weight() const {
  return lm_head_.defined() ? lm_head_ : wte_.weight();
}

Tensor GPT::logits_of(const Tensor& h) const {
  const Tensor& head = lm_head_weight();
  const int64_t real = config_.logits_size();
  return linear(h, real < head.size(0) ? head.narrow(0, 0, real) : head);  // (...,V_real)
}

Tensor GPT::forward(const Tensor& ids) {
  return logits_of(hidden_states(ids));  // (B,T,V)
}

Tensor GPT::hidden_states(const Tensor& ids) {
  LOOM_CHECK(ids.dim() == 2 && ids.dtype() == DType::I64,
             "GPT.forward: expected ids of shape (B,T) and dtype i64, got shape ", ids.shape(),
             " and dtype ", dtype_name(ids.dtype()));
  const int64_t T = ids.size(1);
  LOOM_CHECK(T >= 1 && T <= config_.block_size, "GPT.forward: expected sequence length T in [1, ",
             config_.block_size, "] (block_size), got ", T);
  Tensor pos = Tensor::arange(T, DType::I64, ids.device());
  Tensor x = wte_.forward(ids) + wpe_.forward(pos);  // (B,T,C) + (T,C)
  x = dropout(x, config_.dropout, dropout_gen_, is_training());
  for (auto& b : blocks_) x = b->forward(x, dropout_gen_);
  return ln_f_.forward(x);  // (B,T,C)
}

Tensor GPT::forward_cached(const Tensor& ids, KVCache& cache, bool last_only) {
  LOOM_CHECK(ids.dim() == 2 && ids.dtype() == DType::I64 && ids.size(0) == cache.batch(),
             "GPT.forward_cached: expected ids of shape (", cache.batch(),
             ",T) (the cache's batch) and dtype i64, got shape ", ids.shape(), " and dtype ",
             dtype_name(ids.dtype()));
  LOOM_CHECK(cache.num_layers() == config_.n_layer && cache.dtype() == wte_.weight().dtype() &&
                 cache.device() == wte_.weight().device(),
             "GPT.forward_cached: expected a cache of ", config_.n_layer, " layers, dtype ",
             dtype_name(wte_.weight().dtype()), " on the model's device, got ", cache.num_layers(),
             " layers, dtype ", dtype_name(cache.dtype()));
  const int64_t past = cache.length(), T = ids.size(1);
  LOOM_CHECK(T >= 1 && past + T <= config_.block_size && past + T <= cache.capacity(),
             "GPT.forward_cached: expected 1 to ",
             std::min(config_.block_size, cache.capacity()) - past, " new tokens (", past,
             " cached, capacity ", cache.capacity(), ", block_size ", config_.block_size, "), got ",
             T);
  LOOM_CHECK(!is_training() || config_.dropout == 0.0,
             "GPT.forward_cached: expected eval mode (dropout ", config_.dropout,
             " is not applied with a KV cache); call model.eval() first");
  NoGradGuard no_grad;
  Tensor x = wte_.forward(ids) + wpe_.weight().narrow(0, past, T);  // (B,T,C) + (T,C)
  for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i]->forward_cached(x, cache, int64_t(i));
  cache.advance(T);
  if (last_only) x = x.narrow(1, T - 1, 1);
  x = ln_f_.forward(x);
  return logits_of(x);  // (B,T,V) or (B,1,V)
}

Tensor GPT::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) {
  LOOM_CHECK(targets.shape() == ids.shape(), "GPT.loss: expected targets of shape ", ids.shape(),
             ", got ", targets.shape());
  Tensor logits = forward(ids);
  const int64_t N = ids.numel(), V = logits.size(-1);
  return cross_entropy(logits.reshape({N, V}), targets.reshape({N}), ignore_index);
}

}  // namespace loom::models

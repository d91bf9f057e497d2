// One transformer block (see Block.h). Attention uses the fused causal kernel; only when attention
// dropout is active (training, dropout > 0) does it fall back to explicit softmax(q k^T) so that
// the probabilities can be dropped, exactly as nanoGPT / HF GPT-2 do. Grouped kv heads are
// repeated to the query heads' count before attention (Hugging Face's repeat_kv); autograd sums
// the repeats' gradients back. At tp = 1 every tensor-parallel mapping is the identity.
#include "models/Block.h"

#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/autograd/GradMode.h"
#include "core/autograd/Recompute.h"
#include "core/ops/Attention.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Linear.h"
#include "core/ops/Nn.h"
#include "core/ops/Rope.h"
#include "core/util/Check.h"
#include "parallel/tensor/Mappings.h"

namespace loom::models {

namespace {

double residual_std(const GPTConfig& c) { return c.init_std / std::sqrt(2.0 * double(c.n_layer)); }

// softmax(q k^T / sqrt(D) + causal mask) with dropout on the probabilities, then @ v.
// q, k, v (B,h,T,D) -> (B,h,T,D).
Tensor attention_with_dropout(const Tensor& q, const Tensor& k, const Tensor& v, double p,
                              Generator& gen) {
  const int64_t T = q.size(2), D = q.size(3);
  Tensor att = matmul(q, k.transpose(2, 3)) * (1.0 / std::sqrt(double(D)));  // (B,h,T,T)
  Tensor pos = Tensor::arange(T, DType::I64, q.device());
  Tensor future = gt(pos.unsqueeze(0), pos.unsqueeze(1));  // (T,T): key j > query i
  att = masked_fill(att, future, -std::numeric_limits<double>::infinity());
  att = dropout(softmax(att, -1), p, gen, /*training=*/true);
  return matmul(att, v);
}

// softmax(q keys^T / sqrt(D) + mask) values for queries at slots [past, past+T) over the keys
// at [0, past+T): query i sees key j iff j <= past + i, or, given an additive bias (B,1,T,L)
// (a left-padded cache: GPT::forward_cached), iff its bias is 0. q (B,H,T,D); keys, values
// (B,H,past+T,D). NB: the fused kernel needs equal query and key lengths and takes no mask, so
// decoding takes this explicit path.
Tensor attention_over_cache(const Tensor& q, const Tensor& keys, const Tensor& values,
                            int64_t past, const Tensor& bias) {
  const int64_t T = q.size(2), D = q.size(3), L = keys.size(2);
  Tensor att = matmul(q, keys.transpose(2, 3)) * (1.0 / std::sqrt(double(D)));  // (B,H,T,L)
  if (bias.defined()) {
    att = att + bias;
  } else if (T > 1) {
    Tensor key_pos = Tensor::arange(L, DType::I64, q.device());
    Tensor query_pos = key_pos.narrow(0, past, T);
    Tensor future = gt(key_pos.unsqueeze(0), query_pos.unsqueeze(1));  // (T,L)
    att = masked_fill(att, future, -std::numeric_limits<double>::infinity());
  }
  return matmul(softmax(att, -1), values);  // (B,H,T,D)
}

// The config checked against the TP size before any layer is built (clear messages first).
Communicator& checked(const GPTConfig& c, Communicator& tp) {
  c.validate_layout(tp.size());
  return tp;
}

}  // namespace

Block::Block(const GPTConfig& c, Communicator& tp, DType dtype, Device device)
    : tp_(checked(c, tp)),
      local_heads_(c.n_head / tp.size()),
      local_kv_heads_(c.kv_heads() >= tp.size() ? c.kv_heads() / tp.size() : 1),
      head_dim_(c.head_dim()),
      dropout_(c.dropout),
      mlp_kind_(c.mlp),
      ln_1_(c.n_embd, c.norm, c.bias, tp.rank() == 0, c.norm_eps, dtype, device),
      attn_proj_(c.n_embd, c.n_embd, tp, {c.bias, residual_std(c), dtype, device}),
      ln_2_(c.n_embd, c.norm, c.bias, tp.rank() == 0, c.norm_eps, dtype, device),
      fc_(c.n_embd, (c.mlp == MlpKind::SwiGLU ? 2 : 1) * c.ffn_size(), tp,
          {c.bias, c.init_std, dtype, device}, c.mlp == MlpKind::SwiGLU ? 2 : 1),
      mlp_proj_(c.ffn_size(), c.n_embd, tp, {c.bias, residual_std(c), dtype, device}) {
  const int64_t C = c.n_embd, kv_out = 2 * c.kv_heads() * c.head_dim();
  const tp::LinearOptions qkv_opt{c.has_qkv_bias(), c.init_std, dtype, device};
  register_module("ln_1", ln_1_);
  if (c.fused_qkv()) {
    qkv_ = std::make_unique<tp::ColumnParallelLinear>(C, 3 * C, tp, qkv_opt, /*stacked=*/3);
    register_module("attn.qkv", *qkv_);
  } else {
    q_ = std::make_unique<tp::ColumnParallelLinear>(C, C, tp, qkv_opt);
    register_module("attn.q", *q_);
    if (c.kv_heads() % tp.size() == 0) {
      kv_ = std::make_unique<tp::ColumnParallelLinear>(C, kv_out, tp, qkv_opt, /*stacked=*/2);
      register_module("attn.kv", *kv_);
    } else {
      kv_whole_ = std::make_unique<Linear>(C, kv_out, c.has_qkv_bias(), tp.rank() == 0,
                                           c.init_std, dtype, device);
      register_module("attn.kv", *kv_whole_);
      kv_group_ = tp.rank() / (tp.size() / c.kv_heads());
    }
  }
  register_module("attn.proj", attn_proj_);
  register_module("ln_2", ln_2_);
  register_module("mlp.fc", fc_);
  register_module("mlp.proj", mlp_proj_);
}

bool lora_target_matches(const std::string& target, const std::string& layer) {
  if (target == layer) return true;
  const size_t n = target.size();
  return layer.size() > n && layer.compare(layer.size() - n, n, target) == 0 &&
         layer[layer.size() - n - 1] == '.';
}

std::vector<std::string> Block::linear_names(const GPTConfig& c) {
  if (c.fused_qkv()) return {"attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"};
  return {"attn.q", "attn.kv", "attn.proj", "mlp.fc", "mlp.proj"};
}

std::vector<std::string> Block::add_lora(const tp::LoraOptions& o,
                                         const std::vector<std::string>& targets) {
  std::vector<std::pair<std::string, std::function<void()>>> layers;
  if (qkv_) layers.emplace_back("attn.qkv", [&] { qkv_->add_lora(o); });
  if (q_) layers.emplace_back("attn.q", [&] { q_->add_lora(o); });
  if (kv_) layers.emplace_back("attn.kv", [&] { kv_->add_lora(o); });
  if (kv_whole_) layers.emplace_back("attn.kv", [&] { kv_whole_->add_lora(o); });
  layers.emplace_back("attn.proj", [&] { attn_proj_.add_lora(o); });
  layers.emplace_back("mlp.fc", [&] { fc_.add_lora(o); });
  layers.emplace_back("mlp.proj", [&] { mlp_proj_.add_lora(o); });
  std::vector<std::string> done;
  for (const auto& [name, add] : layers) {
    bool wanted = false;
    for (const std::string& t : targets) wanted = wanted || lora_target_matches(t, name);
    if (!wanted) continue;
    add();
    done.push_back(name);
  }
  return done;
}

std::tuple<Tensor, Tensor, Tensor> Block::project_qkv(const Tensor& x, const RopeTables& rope,
                                                      Generator* gen) const {
  const int64_t B = x.size(0), T = x.size(1), D = head_dim_;
  const int64_t Hq = local_heads_, Hk = local_kv_heads_;
  Tensor q, k, v;
  if (qkv_) {
    std::vector<Tensor> p = split(qkv_->forward(x, gen), Hq * D, -1);  // 3 x (B,T,Hq*D)
    q = p[0];
    k = p[1];
    v = p[2];
  } else if (kv_) {
    q = q_->forward(x, gen);                                          // (B,T,Hq*D)
    std::vector<Tensor> p = split(kv_->forward(x, gen), Hk * D, -1);  // 2 x (B,T,Hk*D)
    k = p[0];
    v = p[1];
  } else {
    q = q_->forward(x, gen);
    Tensor all = tp::copy_to_tp(kv_whole_->forward(x, gen), tp_);  // (B,T,2*n_kv_head*D)
    const int64_t n_kv = all.size(-1) / (2 * D);
    k = all.narrow(-1, kv_group_ * D, D);
    v = all.narrow(-1, (n_kv + kv_group_) * D, D);
  }
  q = q.reshape({B, T, Hq, D});
  k = k.reshape({B, T, Hk, D});
  v = v.reshape({B, T, Hk, D});
  if (rope.cos.defined() && rope.cos.size(0) == T) {
    q = loom::rope(q, rope.cos, rope.sin);
    k = loom::rope(k, rope.cos, rope.sin);
  } else if (rope.cos.defined()) {  // one angle row per (b, t): rotate (1, B*T, heads, D)
    LOOM_CHECK(rope.cos.size(0) == B * T, "Block: expected rope tables of ", T, " or ", B * T,
               " rows, got ", rope.cos.size(0));
    q = loom::rope(q.reshape({1, B * T, Hq, D}), rope.cos, rope.sin).reshape({B, T, Hq, D});
    k = loom::rope(k.reshape({1, B * T, Hk, D}), rope.cos, rope.sin).reshape({B, T, Hk, D});
  }
  return {q, k, v};
}

Tensor Block::expand_kv(const Tensor& t) const {
  const int64_t rep = local_heads_ / local_kv_heads_;
  if (rep == 1) return t;
  const int64_t B = t.size(0), L = t.size(2), D = t.size(3);
  return t.unsqueeze(2).expand({B, local_kv_heads_, rep, L, D}).reshape({B, local_heads_, L, D});
}

Tensor Block::attention(const Tensor& x, tp::TensorParallelRng& rng, Recompute recompute,
                        const RopeTables& rope) const {
  const int64_t B = x.size(0), T = x.size(1), H = local_heads_;
  auto [qh, kh, vh] = project_qkv(x, rope, &rng.replicated());  // (B,T,heads,D)
  Tensor q = qh.transpose(1, 2), k = expand_kv(kh.transpose(1, 2)),
         v = expand_kv(vh.transpose(1, 2));  // (B,H,T,D)
  const bool drop = is_training() && dropout_ > 0.0;
  Tensor y;
  if (!drop) {
    y = scaled_dot_product_attention(q, k, v, /*causal=*/true);  // (B,H,T,D)
  } else if (recompute == Recompute::Selective) {
    // Keep q, k, v; redraw the (B,H,T,T) probabilities and their mask in backward.
    const uint64_t seed = rng.tensor_parallel().seed(), offset = rng.tensor_parallel().offset();
    rng.tensor_parallel().next_offset(uint64_t(B * H * T * T));
    const double p = dropout_;
    y = autograd::recompute(
        [seed, offset, p](const std::vector<Tensor>& in) {
          Generator gen(seed, offset);
          return attention_with_dropout(in[0], in[1], in[2], p, gen);
        },
        {q, k, v});
  } else {
    y = attention_with_dropout(q, k, v, dropout_, rng.tensor_parallel());
  }
  y = attn_proj_.forward(y.transpose(1, 2).reshape({B, T, H * head_dim_}),
                         &rng.replicated());  // (B,T,C)
  return dropout(y, dropout_, rng.replicated(), is_training());
}

Tensor Block::mlp(const Tensor& x, tp::TensorParallelRng& rng, Recompute recompute) const {
  Generator* gen = &rng.replicated();
  Tensor a = fc_.forward(x, gen);  // (B,T,F/tp), SwiGLU: (B,T,2F/tp) = [gate_r | up_r]
  const bool selective = recompute == Recompute::Selective;  // the activation redone in backward
  Tensor y;
  if (mlp_kind_ == MlpKind::SwiGLU)
    y = selective ? mlp_proj_.forward_swiglu(a, gen) : mlp_proj_.forward(swiglu(a), gen);
  else
    y = selective ? mlp_proj_.forward_gelu(a, gen) : mlp_proj_.forward(gelu(a), gen);
  return dropout(y, dropout_, rng.replicated(), is_training());
}

Tensor Block::forward(const Tensor& x, tp::TensorParallelRng& rng, Recompute recompute,
                      const RopeTables& rope) const {
  if (recompute == Recompute::Full && autograd::GradMode::is_enabled()) {
    // Keep only x; rerun the whole block (its dropout streams from the same state) in backward.
    const tp::TensorParallelRng::State state = rng.state();
    const int tp_rank = rng.tp_rank();
    return autograd::recompute(
        [this, state, tp_rank, rope](const std::vector<Tensor>& in) {
          tp::TensorParallelRng r(state.seed, tp_rank);
          r.set_state(state);
          return forward(in[0], r, Recompute::None, rope);
        },
        {x});
  }
  Tensor h = x + attention(ln_1_.forward(x), rng, recompute, rope);
  return h + mlp(ln_2_.forward(h), rng, recompute);
}

Tensor Block::forward_cached(const Tensor& x, KVCache& cache, int64_t layer,
                             const RopeTables& rope, const Tensor& bias) const {
  const int64_t B = x.size(0), T = x.size(1);
  auto [qh, kh, vh] = project_qkv(ln_1_.forward(x), rope);  // (B,T,heads,D)
  Tensor q = qh.transpose(1, 2), k = kh.transpose(1, 2), v = vh.transpose(1, 2);
  const int64_t past = cache.length();
  auto [keys, values] = cache.append(layer, k, v);  // (B,Hkv,past+T,D)
  // An empty unpadded cache is a plain causal prefill: the fused kernel on the new k, v is exact.
  Tensor y = past == 0 && !bias.defined()
                 ? scaled_dot_product_attention(q, expand_kv(k), expand_kv(v), true)
                 : attention_over_cache(q, expand_kv(keys), expand_kv(values), past, bias);
  Tensor h = x + attn_proj_.forward(y.transpose(1, 2).reshape({B, T, local_heads_ * head_dim_}));
  Tensor a = fc_.forward(ln_2_.forward(h));
  return h + mlp_proj_.forward(mlp_kind_ == MlpKind::SwiGLU ? swiglu(a) : gelu(a));
}

}  // namespace loom::models

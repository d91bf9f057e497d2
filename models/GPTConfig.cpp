// GPTConfig: presets (expanded from config/ConfigDefaults.cpp's table, so the CLI and the library
// agree), the mapping from a run config's model section, validation, and the closed-form
// parameter count that GPT::num_parameters() must agree with.
#include "models/GPTConfig.h"

#include "config/Config.pb.h"
#include "config/ConfigDefaults.h"
#include "core/util/Check.h"

namespace loom::models {

std::vector<std::string> GPTConfig::preset_names() {
  std::vector<std::string> names;
  for (const config::ModelPreset& p : config::model_presets()) names.emplace_back(p.name);
  return names;
}

GPTConfig GPTConfig::preset(const std::string& name) {
  if (config::find_preset(name) == nullptr) {
    std::string known;
    for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw ValueError("GPTConfig::preset: expected one of {" + known + "}, got '" + name + "'");
  }
  config::ModelConfig m;
  m.set_preset(name);
  config::model_defaults(m);
  return from_model_config(m);
}

namespace {

RopeScaling rope_scaling_from(const config::RopeScaling& r) {
  RopeScaling s;
  switch (r.type()) {
    case config::RopeScaling::LINEAR: s.kind = RopeScalingKind::Linear; break;
    case config::RopeScaling::LLAMA3: s.kind = RopeScalingKind::Llama3; break;
    default: s.kind = RopeScalingKind::None; break;
  }
  s.factor = r.has_factor() ? r.factor() : s.factor;
  s.low_freq_factor = r.has_low_freq_factor() ? r.low_freq_factor() : s.low_freq_factor;
  s.high_freq_factor = r.has_high_freq_factor() ? r.high_freq_factor() : s.high_freq_factor;
  if (r.has_original_max_positions()) s.original_max_positions = r.original_max_positions();
  return s;
}

}  // namespace

GPTConfig GPTConfig::from_model_config(const config::ModelConfig& m) {
  GPTConfig g;
  g.n_layer = m.n_layer();
  g.n_head = m.n_head();
  g.n_embd = m.n_embd();
  g.vocab_size = m.vocab_size();
  g.block_size = m.block_size();
  g.dropout = m.dropout();
  g.bias = m.bias();
  g.tie_embeddings = m.tie_embeddings();
  g.init_std = m.init_std();
  g.norm = m.norm() == config::ModelConfig::RMS_NORM ? NormKind::RMSNorm : NormKind::LayerNorm;
  if (m.has_norm_eps()) g.norm_eps = m.norm_eps();
  g.position = m.position() == config::ModelConfig::ROPE ? PositionKind::Rope
                                                         : PositionKind::Learned;
  if (m.has_rope_theta()) g.rope_theta = m.rope_theta();
  g.rope_scaling = rope_scaling_from(m.rope_scaling());
  g.mlp = m.mlp() == config::ModelConfig::SWIGLU ? MlpKind::SwiGLU : MlpKind::Gelu;
  g.intermediate_size = m.intermediate_size();
  g.n_kv_head = m.n_kv_head();
  if (m.has_qkv_bias()) g.qkv_bias = m.qkv_bias();
  return g;
}

config::ModelConfig GPTConfig::to_model_config() const {
  config::ModelConfig m;
  m.set_preset("custom");
  m.set_n_layer(n_layer);
  m.set_n_head(n_head);
  m.set_n_embd(n_embd);
  m.set_vocab_size(vocab_size);
  m.set_block_size(block_size);
  m.set_dropout(dropout);
  m.set_bias(bias);
  m.set_tie_embeddings(tie_embeddings);
  m.set_init_std(init_std);
  m.set_norm(norm == NormKind::RMSNorm ? config::ModelConfig::RMS_NORM
                                       : config::ModelConfig::LAYER_NORM);
  m.set_norm_eps(norm_eps);
  m.set_position(position == PositionKind::Rope ? config::ModelConfig::ROPE
                                                : config::ModelConfig::LEARNED);
  m.set_rope_theta(rope_theta);
  config::RopeScaling* r = m.mutable_rope_scaling();
  r->set_type(rope_scaling.kind == RopeScalingKind::Linear   ? config::RopeScaling::LINEAR
              : rope_scaling.kind == RopeScalingKind::Llama3 ? config::RopeScaling::LLAMA3
                                                             : config::RopeScaling::NONE);
  r->set_factor(rope_scaling.factor);
  r->set_low_freq_factor(rope_scaling.low_freq_factor);
  r->set_high_freq_factor(rope_scaling.high_freq_factor);
  r->set_original_max_positions(rope_scaling.original_max_positions);
  m.set_mlp(mlp == MlpKind::SwiGLU ? config::ModelConfig::SWIGLU : config::ModelConfig::GELU);
  m.set_intermediate_size(ffn_size());
  m.set_n_kv_head(kv_heads());
  m.set_qkv_bias(has_qkv_bias());
  return m;
}

void GPTConfig::validate() const {
  LOOM_CHECK(n_layer >= 1 && n_head >= 1 && n_embd >= 1 && vocab_size >= 1 && block_size >= 1,
             "GPTConfig: expected positive n_layer/n_head/n_embd/vocab_size/block_size, got ",
             n_layer, "/", n_head, "/", n_embd, "/", vocab_size, "/", block_size);
  LOOM_CHECK(n_embd % n_head == 0, "GPTConfig: expected n_embd divisible by n_head, got n_embd ",
             n_embd, " and n_head ", n_head);
  LOOM_CHECK(dropout >= 0.0 && dropout < 1.0, "GPTConfig: expected dropout in [0, 1), got ",
             dropout);
  LOOM_CHECK(init_std > 0.0, "GPTConfig: expected init_std > 0, got ", init_std);
  LOOM_CHECK(real_vocab_size >= 0 && real_vocab_size <= vocab_size,
             "GPTConfig: expected real_vocab_size in [0, vocab_size ", vocab_size, "], got ",
             real_vocab_size);
  LOOM_CHECK(n_kv_head >= 0 && n_head % kv_heads() == 0, "GPTConfig: expected n_kv_head ",
             "dividing n_head ", n_head, ", got ", n_kv_head);
  LOOM_CHECK(intermediate_size >= 0, "GPTConfig: expected intermediate_size >= 0 (0 = 4 n_embd), ",
             "got ", intermediate_size);
  LOOM_CHECK(norm_eps >= 0.0, "GPTConfig: expected norm_eps >= 0, got ", norm_eps);
  if (position != PositionKind::Rope) return;
  LOOM_CHECK(head_dim() % 2 == 0, "GPTConfig: expected an even head size for rotary embeddings, ",
             "got n_embd / n_head = ", head_dim());
  LOOM_CHECK(rope_theta > 0.0, "GPTConfig: expected rope_theta > 0, got ", rope_theta);
  const RopeScaling& r = rope_scaling;
  if (r.kind == RopeScalingKind::None) return;
  LOOM_CHECK(r.factor > 0.0, "GPTConfig: expected rope_scaling.factor > 0, got ", r.factor);
  if (r.kind != RopeScalingKind::Llama3) return;
  LOOM_CHECK(r.low_freq_factor > 0.0 && r.high_freq_factor > r.low_freq_factor &&
                 r.original_max_positions >= 1,
             "GPTConfig: expected llama3 rope scaling with 0 < low_freq_factor < ",
             "high_freq_factor and original_max_positions >= 1, got ", r.low_freq_factor, ", ",
             r.high_freq_factor, ", ", r.original_max_positions);
}

void GPTConfig::validate_layout(int tp) const {
  LOOM_CHECK(tp >= 1 && n_head % tp == 0, "GPT: expected n_head ", n_head,
             " divisible by the TP size ", tp);
  const int64_t kv = kv_heads();
  LOOM_CHECK(kv % tp == 0 || tp % kv == 0, "GPT: expected n_kv_head ", kv, " to be a multiple ",
             "or a divisor of the TP size ", tp, " (kv heads are split, or replicated when tp > ",
             "n_kv_head)");
  LOOM_CHECK(ffn_size() % tp == 0, "GPT: expected the MLP width ", ffn_size(),
             " (intermediate_size) divisible by the TP size ", tp);
}

int64_t GPTConfig::block_parameters() const {
  const int64_t C = n_embd, F = ffn_size(), b = bias ? 1 : 0;
  const int64_t qkv_out = n_embd + 2 * kv_heads() * head_dim();
  const int64_t norm_size = C + (norm == NormKind::LayerNorm ? b * C : 0);
  const int64_t up_out = mlp == MlpKind::SwiGLU ? 2 * F : F;
  return 2 * norm_size                                      // ln_1, ln_2
         + C * qkv_out + (has_qkv_bias() ? qkv_out : 0)     // attn.qkv (or attn.q + attn.kv)
         + C * C + b * C                                    // attn.proj
         + C * up_out + b * up_out                          // mlp.fc
         + F * C + b * C;                                   // mlp.proj
}

int64_t GPTConfig::num_parameters() const {
  const int64_t C = n_embd, b = bias ? 1 : 0;
  const int64_t norm_size = C + (norm == NormKind::LayerNorm ? b * C : 0);
  int64_t n = vocab_size * C + n_layer * block_parameters() + norm_size;
  if (position == PositionKind::Learned) n += block_size * C;
  if (!tie_embeddings) n += vocab_size * C;
  return n;
}

}  // namespace loom::models

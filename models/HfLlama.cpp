// Hugging Face Llama-family config and tensor mapping (see HfLlama.h). The class defaults used
// for absent config.json fields are transformers 4.45's (LlamaConfig, Qwen2Config,
// MistralConfig agree on each one used here: rms_norm_eps 1e-6, rope_theta 10000,
// tie_word_embeddings false, no rope scaling, no biases but Qwen2's q/k/v).
#include "models/HfLlama.h"

#include <functional>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/ops/Indexing.h"
#include "config/ConfigValidate.h"
#include "core/util/Check.h"

namespace loom::models {

namespace {

using nlohmann::json;

constexpr const char* kLlama = "LlamaForCausalLM";
constexpr const char* kQwen2 = "Qwen2ForCausalLM";
constexpr const char* kMistral = "MistralForCausalLM";

// Reads config.json fields with the file named in every error.
struct Fields {
  const json& j;
  const std::string& where;

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }
  int64_t integer(const char* key, std::optional<int64_t> dflt = std::nullopt) const {
    if (!has(key)) {
      LOOM_CHECK(dflt.has_value(), where, ": expected field \"", key, "\" (an integer)");
      return *dflt;
    }
    LOOM_CHECK(j.at(key).is_number_integer(), where, ": expected \"", key, "\" to be an ",
               "integer, got ", j.at(key).dump());
    return j.at(key).get<int64_t>();
  }
  // A size: an integer in [1, the bound of the Loom field it becomes].
  int64_t size(const char* key, const char* loom_field,
               std::optional<int64_t> dflt = std::nullopt) const {
    const int64_t v = integer(key, dflt), hi = config::size_bound(loom_field);
    LOOM_CHECK(v >= 1 && v <= hi, where, ": expected \"", key, "\" in [1, ", hi, "] (the bound of ",
               loom_field, "), got ", v);
    return v;
  }
  double number(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    LOOM_CHECK(j.at(key).is_number(), where, ": expected \"", key, "\" to be a number, got ",
               j.at(key).dump());
    return j.at(key).get<double>();
  }
  bool boolean(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    LOOM_CHECK(j.at(key).is_boolean(), where, ": expected \"", key, "\" to be true or false, ",
               "got ", j.at(key).dump());
    return j.at(key).get<bool>();
  }
  std::string text(const char* key, const std::string& dflt) const {
    if (!has(key)) return dflt;
    LOOM_CHECK(j.at(key).is_string(), where, ": expected \"", key, "\" to be a string, got ",
               j.at(key).dump());
    return j.at(key).get<std::string>();
  }
};

std::string architecture_of(const Fields& f) {
  std::string supported;
  for (const std::string& a : hf_llama_architectures())
    supported += (supported.empty() ? "" : ", ") + a;
  const json& a = f.has("architectures") ? f.j.at("architectures") : json();
  LOOM_CHECK(a.is_array() && a.size() == 1 && a[0].is_string(), f.where, ": expected ",
             "\"architectures\" to name one of ", supported, ", got ", a.dump());
  const std::string arch = a[0].get<std::string>();
  LOOM_CHECK(arch == kLlama || arch == kQwen2 || arch == kMistral, f.where, ": unsupported ",
             "architecture \"", arch, "\"; supported: ", supported);
  return arch;
}

RopeScaling rope_scaling_of(const Fields& f) {
  RopeScaling r;
  if (!f.has("rope_scaling")) return r;
  const json& s = f.j.at("rope_scaling");
  LOOM_CHECK(s.is_object(), f.where, ": expected \"rope_scaling\" to be an object or null, got ",
             s.dump());
  const std::string where = f.where + " rope_scaling";
  const Fields rs{s, where};
  const std::string type = rs.text("rope_type", rs.text("type", "default"));
  if (type == "default") return r;
  LOOM_CHECK(type == "linear" || type == "llama3", where, ": unsupported rope_type \"", type,
             "\"; supported: default, linear, llama3");
  r.kind = type == "linear" ? RopeScalingKind::Linear : RopeScalingKind::Llama3;
  r.factor = rs.number("factor", 0.0);
  if (r.kind == RopeScalingKind::Llama3) {
    r.low_freq_factor = rs.number("low_freq_factor", 0.0);
    r.high_freq_factor = rs.number("high_freq_factor", 0.0);
    r.original_max_positions = rs.integer("original_max_position_embeddings");
  }
  return r;
}

// The biases and attention options each architecture allows.
void biases_and_attention(const Fields& f, const std::string& arch, GPTConfig& c) {
  if (arch == kQwen2) {  // q/k/v biases, nothing else
    c.bias = false;
    c.qkv_bias = true;
    LOOM_CHECK(!f.boolean("use_sliding_window", false), f.where, ": sliding-window attention ",
               "(\"use_sliding_window\": true) is not supported");
    return;
  }
  if (arch == kMistral) {
    const int64_t window = f.integer("sliding_window", c.block_size);
    LOOM_CHECK(window >= c.block_size, f.where, ": sliding-window attention (\"sliding_window\": ",
               window, " < max_position_embeddings ", c.block_size, ") is not supported");
  }
  // Llama's attention_bias covers q, k, v and o; Loom's `bias` covers o and the MLP together.
  const bool attn = f.boolean("attention_bias", false), mlp = f.boolean("mlp_bias", false);
  LOOM_CHECK(attn == mlp, f.where, ": expected attention_bias and mlp_bias equal (Loom's biases ",
             "cover o_proj and the MLP together), got ", attn, " and ", mlp);
  c.bias = attn;
  c.qkv_bias = attn;
}

}  // namespace

std::vector<std::string> hf_llama_architectures() { return {kLlama, kQwen2, kMistral}; }

GPTConfig hf_llama_config(const std::string& config_json, const std::string& where) {
  json j;
  try {
    j = json::parse(config_json);
  } catch (const json::exception& e) {
    throw ValueError(where + ": expected JSON, got a parse error: " + e.what());
  }
  LOOM_CHECK(j.is_object(), where, ": expected a JSON object");
  const Fields f{j, where};
  const std::string arch = architecture_of(f);
  LOOM_CHECK(f.text("hidden_act", "silu") == "silu", where, ": expected \"hidden_act\": \"silu\"",
             ", got \"", f.text("hidden_act", ""), "\"");
  GPTConfig c;
  c.n_layer = f.size("num_hidden_layers", "model.n_layer");
  c.n_head = f.size("num_attention_heads", "model.n_head");
  c.n_embd = f.size("hidden_size", "model.n_embd");
  c.vocab_size = f.size("vocab_size", "model.vocab_size");
  c.block_size = f.size("max_position_embeddings", "model.block_size");
  c.intermediate_size = f.size("intermediate_size", "model.intermediate_size");
  c.n_kv_head = f.size("num_key_value_heads", "model.n_kv_head", c.n_head);
  LOOM_CHECK(c.n_head >= 1 && f.integer("head_dim", c.n_embd / c.n_head) * c.n_head == c.n_embd,
             where, ": expected head_dim = hidden_size / num_attention_heads");
  LOOM_CHECK(f.number("partial_rotary_factor", 1.0) == 1.0, where, ": expected ",
             "partial_rotary_factor 1 (rotary embeddings on the whole head)");
  c.tie_embeddings = f.boolean("tie_word_embeddings", false);
  c.norm = NormKind::RMSNorm;
  c.norm_eps = f.number("rms_norm_eps", 1e-6);
  c.position = PositionKind::Rope;
  c.rope_theta = f.number("rope_theta", 10000.0);
  c.rope_scaling = rope_scaling_of(f);
  c.mlp = MlpKind::SwiGLU;
  c.dropout = 0.0;
  biases_and_attention(f, arch, c);
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw ValueError(where + ": " + e.what());
  }
  return c;
}

// ---- tensors --------------------------------------------------------------------------------

namespace {

// Named HF tensors, each taken once; what is left over is reported.
class Source {
 public:
  explicit Source(const std::map<std::string, Tensor>& hf) : hf_(hf) {}
  Tensor take(const std::string& name, const Shape& shape) {
    auto it = hf_.find(name);
    LOOM_CHECK(it != hf_.end(), "hf_llama_to_loom: expected tensor '", name, "', not found");
    LOOM_CHECK(it->second.shape() == shape, "hf_llama_to_loom: expected '", name,
               "' of shape ", shape, ", got ", it->second.shape());
    used_.insert(name);
    return it->second.contiguous();
  }
  void skip(const std::string& name) { used_.insert(name); }
  void check_all_used() const {
    std::string left;
    for (const auto& [name, t] : hf_) {
      const bool buffer = name.ends_with("rotary_emb.inv_freq");
      if (!used_.count(name) && !buffer) left += (left.empty() ? "" : ", ") + name;
    }
    LOOM_CHECK(left.empty(), "hf_llama_to_loom: expected every tensor to map to a Loom ",
               "parameter, got unused: ", left);
  }

 private:
  const std::map<std::string, Tensor>& hf_;
  std::set<std::string> used_;
};

// rows (R, C) -> (rows_to, C), zero rows appended.
Tensor pad_rows(const Tensor& t, int64_t rows_to) {
  if (t.size(0) == rows_to) return t;
  return cat({t, Tensor::zeros({rows_to - t.size(0), t.size(1)}, t.dtype(), t.device())}, 0);
}

void layer_to_loom(Source& src, const GPTConfig& c, int64_t i, std::map<std::string, Tensor>& out) {
  const int64_t C = c.n_embd, KD = c.kv_heads() * c.head_dim(), F = c.ffn_size();
  const std::string h = "model.layers." + std::to_string(i) + ".";
  const std::string l = "blocks." + std::to_string(i) + ".";
  out[l + "ln_1.weight"] = src.take(h + "input_layernorm.weight", {C});
  out[l + "ln_2.weight"] = src.take(h + "post_attention_layernorm.weight", {C});
  auto qkv = [&](const char* suffix, bool matrix) {
    auto shape = [&](int64_t rows) { return matrix ? Shape{rows, C} : Shape{rows}; };
    const std::string p = h + "self_attn.";
    Tensor q = src.take(p + "q_proj." + suffix, shape(C));
    Tensor k = src.take(p + "k_proj." + suffix, shape(KD));
    Tensor v = src.take(p + "v_proj." + suffix, shape(KD));
    if (c.fused_qkv()) {
      out[l + "attn.qkv." + suffix] = cat({q, k, v}, 0);
    } else {
      out[l + "attn.q." + suffix] = q;
      out[l + "attn.kv." + suffix] = cat({k, v}, 0);
    }
  };
  qkv("weight", true);
  if (c.has_qkv_bias()) qkv("bias", false);
  out[l + "attn.proj.weight"] = src.take(h + "self_attn.o_proj.weight", {C, C});
  out[l + "mlp.fc.weight"] = cat({src.take(h + "mlp.gate_proj.weight", {F, C}),
                                  src.take(h + "mlp.up_proj.weight", {F, C})}, 0);
  out[l + "mlp.proj.weight"] = src.take(h + "mlp.down_proj.weight", {C, F});
  if (!c.bias) return;
  out[l + "attn.proj.bias"] = src.take(h + "self_attn.o_proj.bias", {C});
  out[l + "mlp.fc.bias"] = cat({src.take(h + "mlp.gate_proj.bias", {F}),
                                src.take(h + "mlp.up_proj.bias", {F})}, 0);
  out[l + "mlp.proj.bias"] = src.take(h + "mlp.down_proj.bias", {C});
}

void check_llama_family(const GPTConfig& c, const char* op) {
  LOOM_CHECK(c.norm == NormKind::RMSNorm && c.position == PositionKind::Rope &&
                 c.mlp == MlpKind::SwiGLU,
             op, ": expected a Llama-family config (RMSNorm, rope, SwiGLU)");
}

}  // namespace

std::map<std::string, Tensor> hf_llama_to_loom(const std::map<std::string, Tensor>& hf,
                                               const GPTConfig& c) {
  check_llama_family(c, "hf_llama_to_loom");
  NoGradGuard no_grad;
  Source src(hf);
  const int64_t C = c.n_embd, V = c.logits_size();
  std::map<std::string, Tensor> out;
  out["wte.weight"] = pad_rows(src.take("model.embed_tokens.weight", {V, C}), c.vocab_size);
  for (int64_t i = 0; i < c.n_layer; ++i) layer_to_loom(src, c, i, out);
  out["ln_f.weight"] = src.take("model.norm.weight", {C});
  if (!c.tie_embeddings)
    out["lm_head.weight"] = pad_rows(src.take("lm_head.weight", {V, C}), c.vocab_size);
  else
    src.skip("lm_head.weight");  // a tied head some files also store
  src.check_all_used();
  return out;
}

namespace {

void layer_to_hf(const std::function<Tensor(const std::string&)>& get, const GPTConfig& c,
                 int64_t i, std::map<std::string, Tensor>& out) {
  const int64_t C = c.n_embd, KD = c.kv_heads() * c.head_dim(), F = c.ffn_size();
  const std::string h = "model.layers." + std::to_string(i) + ".";
  const std::string l = "blocks." + std::to_string(i) + ".";
  out[h + "input_layernorm.weight"] = get(l + "ln_1.weight");
  out[h + "post_attention_layernorm.weight"] = get(l + "ln_2.weight");
  auto qkv = [&](const std::string& suffix) {
    const std::string p = h + "self_attn.";
    std::vector<Tensor> parts;
    if (c.fused_qkv()) {
      parts = split(get(l + "attn.qkv." + suffix), C, 0);
    } else {
      parts = split(get(l + "attn.kv." + suffix), KD, 0);
      parts.insert(parts.begin(), get(l + "attn.q." + suffix));
    }
    out[p + "q_proj." + suffix] = parts[0].contiguous();
    out[p + "k_proj." + suffix] = parts[1].contiguous();
    out[p + "v_proj." + suffix] = parts[2].contiguous();
  };
  qkv("weight");
  if (c.has_qkv_bias()) qkv("bias");
  for (const char* suffix : {"weight", "bias"}) {
    if (std::string(suffix) == "bias" && !c.bias) break;
    std::vector<Tensor> gate_up = split(get(l + "mlp.fc." + suffix), F, 0);
    out[h + "mlp.gate_proj." + suffix] = gate_up[0].contiguous();
    out[h + "mlp.up_proj." + suffix] = gate_up[1].contiguous();
    out[h + "self_attn.o_proj." + suffix] = get(l + "attn.proj." + suffix);
    out[h + "mlp.down_proj." + suffix] = get(l + "mlp.proj." + suffix);
  }
}

}  // namespace

std::map<std::string, Tensor> loom_to_hf_llama(const std::map<std::string, Tensor>& loom,
                                               const GPTConfig& c) {
  check_llama_family(c, "loom_to_hf_llama");
  NoGradGuard no_grad;
  auto get = [&](const std::string& name) {
    auto it = loom.find(name);
    LOOM_CHECK(it != loom.end(), "loom_to_hf_llama: expected parameter '", name, "', not found");
    return it->second.contiguous();
  };
  const int64_t V = c.logits_size();
  std::map<std::string, Tensor> out;
  out["model.embed_tokens.weight"] = get("wte.weight").narrow(0, 0, V).contiguous();
  for (int64_t i = 0; i < c.n_layer; ++i) layer_to_hf(get, c, i, out);
  out["model.norm.weight"] = get("ln_f.weight");
  if (!c.tie_embeddings)
    out["lm_head.weight"] = get("lm_head.weight").narrow(0, 0, V).contiguous();
  return out;
}

}  // namespace loom::models

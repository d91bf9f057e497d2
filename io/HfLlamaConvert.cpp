// Hugging Face Llama / Qwen2 / Mistral <-> Loom for the io layer (see HfConvert.h detail): the
// name table HfReader reads a Llama-family directory with (Loom's fused q/k/v, k/v and gate/up are
// HF tensors stacked along dim 0; no transposes), and the config.json / generation_config.json an
// export writes. Parsing config.json is models/HfLlama.h's hf_llama_config.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "io/HfConvert.h"
#include "models/HfLlama.h"

namespace loom::io::detail {

using nlohmann::json;

std::string HfParam::describe() const {
  if (stacked.empty()) return hf;
  std::string s;
  for (const auto& [name, rows] : stacked) s += (s.empty() ? "" : " + ") + name;
  return s;
}

bool is_llama_family(const models::GPTConfig& c) {
  return c.norm == models::NormKind::RMSNorm && c.position == models::PositionKind::Rope &&
         c.mlp == models::MlpKind::SwiGLU;
}

std::vector<std::string> supported_architectures() {
  std::vector<std::string> a = {"GPT2LMHeadModel"};
  for (const std::string& s : models::hf_llama_architectures()) a.push_back(s);
  return a;
}

namespace {

void add_layer(const models::GPTConfig& c, int64_t i, std::vector<HfParam>& out) {
  const int64_t C = c.n_embd, KD = c.kv_heads() * c.head_dim(), F = c.ffn_size();
  const std::string h = "model.layers." + std::to_string(i) + ".";
  const std::string l = "blocks." + std::to_string(i) + ".";
  auto one = [&](const std::string& loom, const std::string& hf, Shape shape) {
    out.push_back({l + loom, h + hf, std::move(shape), false, false, {}});
  };
  auto stack = [&](const std::string& loom, std::vector<std::pair<std::string, int64_t>> parts,
                   bool matrix, int64_t in) {
    int64_t rows = 0;
    for (auto& [name, r] : parts) {
      name = h + name;
      rows += r;
    }
    out.push_back({l + loom, "", matrix ? Shape{rows, in} : Shape{rows}, false, false,
                   std::move(parts)});
  };
  one("ln_1.weight", "input_layernorm.weight", {C});
  for (const char* suffix : {"weight", "bias"}) {
    const std::string s = suffix;
    const bool matrix = s == "weight";
    if (!matrix && !c.has_qkv_bias()) break;
    const std::string q = "self_attn.q_proj." + s, k = "self_attn.k_proj." + s,
                      v = "self_attn.v_proj." + s;
    if (c.fused_qkv()) {
      stack("attn.qkv." + s, {{q, C}, {k, KD}, {v, KD}}, matrix, C);
    } else {
      one("attn.q." + s, q, matrix ? Shape{C, C} : Shape{C});
      stack("attn.kv." + s, {{k, KD}, {v, KD}}, matrix, C);
    }
  }
  one("attn.proj.weight", "self_attn.o_proj.weight", {C, C});
  if (c.bias) one("attn.proj.bias", "self_attn.o_proj.bias", {C});
  one("ln_2.weight", "post_attention_layernorm.weight", {C});
  stack("mlp.fc.weight", {{"mlp.gate_proj.weight", F}, {"mlp.up_proj.weight", F}}, true, C);
  if (c.bias) stack("mlp.fc.bias", {{"mlp.gate_proj.bias", F}, {"mlp.up_proj.bias", F}}, false, C);
  one("mlp.proj.weight", "mlp.down_proj.weight", {C, F});
  if (c.bias) one("mlp.proj.bias", "mlp.down_proj.bias", {C});
}

bool is_llama_architecture(const json& arch) {
  if (!arch.is_array() || arch.size() != 1 || !arch[0].is_string()) return false;
  for (const std::string& a : models::hf_llama_architectures())
    if (arch[0] == a) return true;
  return false;
}

}  // namespace

std::vector<HfParam> hf_llama_params(const models::GPTConfig& c, int64_t vocab) {
  const int64_t C = c.n_embd;
  std::vector<HfParam> out = {{"wte.weight", "model.embed_tokens.weight", {vocab, C}, false,
                               true, {}}};
  for (int64_t i = 0; i < c.n_layer; ++i) add_layer(c, i, out);
  out.push_back({"ln_f.weight", "model.norm.weight", {C}, false, false, {}});
  if (!c.tie_embeddings)
    out.push_back({"lm_head.weight", "lm_head.weight", {vocab, C}, false, true, {}});
  return out;
}

std::string llama_config_json(const models::GPTConfig& c, int64_t vocab_size,
                              const std::string& base, int64_t eos_id) {
  json j = base.empty() ? json::object() : json::parse(base);
  const bool qwen = c.has_qkv_bias() && !c.bias;
  if (!is_llama_architecture(j.value("architectures", json())))
    j["architectures"] = {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  const std::string arch = j["architectures"][0];
  j["model_type"] = arch == "Qwen2ForCausalLM" ? "qwen2" : arch == "MistralForCausalLM" ? "mistral"
                                                                                       : "llama";
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.ffn_size();
  j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = c.kv_heads();
  j["vocab_size"] = vocab_size;
  // A run may train on a shorter context than the model takes; a llama3 scaling needs at least
  // its original context.
  int64_t positions = std::max(c.block_size, j.value("max_position_embeddings", int64_t(0)));
  if (c.rope_scaling.kind == models::RopeScalingKind::Llama3)
    positions = std::max(positions, c.rope_scaling.original_max_positions);
  j["max_position_embeddings"] = positions;
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tie_embeddings;
  if (arch == "LlamaForCausalLM") {
    j["attention_bias"] = c.bias;
    j["mlp_bias"] = c.bias;
    j["head_dim"] = c.head_dim();
  }
  if (arch == "MistralForCausalLM") j["sliding_window"] = nullptr;
  if (arch == "Qwen2ForCausalLM") j["use_sliding_window"] = false;
  const models::RopeScaling& r = c.rope_scaling;
  if (r.kind == models::RopeScalingKind::None) {
    if (base.empty() || j.contains("rope_scaling")) j["rope_scaling"] = nullptr;
  } else if (r.kind == models::RopeScalingKind::Linear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", r.factor}};
  } else {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", r.factor},
                         {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position_embeddings", r.original_max_positions}};
  }
  if (base.empty()) {  // an imported config.json keeps its own token ids (or none)
    j["bos_token_id"] = eos_id;
    j["eos_token_id"] = eos_id;
  }
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

std::string generation_config_json(const std::string& config_json) {
  const json c = json::parse(config_json);
  json g = {{"_from_model_config", true}};
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (c.contains(key) && !c[key].is_null()) g[key] = c[key];
  return g.dump(2) + "\n";
}

}  // namespace loom::io::detail

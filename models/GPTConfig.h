// GPTConfig: the shape and architecture of the one decoder-only transformer Loom builds (GPT.h):
// layers, heads, width, vocabulary, context, and the choices that make it GPT-2 (the defaults:
// LayerNorm, learned positions, GELU MLP of 4 C, biases, tied head) or a Llama-family model
// (RMSNorm, rotary embeddings with optional Llama-3 / linear scaling, SwiGLU MLP of its own width,
// grouped-query attention, q/k/v biases apart from the others as in Qwen2, tied or untied head).
// Presets name the published sizes (config/ConfigDefaults.cpp holds the one table).
//   GPTConfig c = GPTConfig::preset("llama-3.2-1b");  // 16 layers, 32 heads, 8 kv heads, 2048 wide
//   c.validate_layout(/*tp=*/2);                      // heads, kv heads and MLP split over TP?
//   int64_t n = c.num_parameters();                   // 1,235,814,400 (tied head)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace loom::config {
class ModelConfig;
}

namespace loom::models {

enum class NormKind : uint8_t { LayerNorm, RMSNorm };
enum class PositionKind : uint8_t { Learned, Rope };
enum class MlpKind : uint8_t { Gelu, SwiGLU };
enum class RopeScalingKind : uint8_t { None, Linear, Llama3 };

// Hugging Face's rope_scaling (config/Config.proto RopeScaling documents the formulas).
struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // Llama3
  double high_freq_factor = 4.0;  // Llama3
  int64_t original_max_positions = 8192;  // Llama3
};

struct GPTConfig {
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  int64_t vocab_size = 50257;  // rows of wte / the LM head (possibly padded for fast kernels / TP)
  // Tokens that exist, <= vocab_size; 0 = vocab_size. Rows beyond it are padding: zero at init,
  // never looked up, and not part of the logits (so they take no part in the softmax).
  int64_t real_vocab_size = 0;
  int64_t block_size = 1024;  // maximum sequence length (rows of wpe with learned positions)
  double dropout = 0.0;       // embedding, attention-probability and residual dropout
  bool bias = true;           // biases in Linear and LayerNorm (q/k/v: see qkv_bias)
  bool tie_embeddings = true; // lm head shares wte.weight
  double init_std = 0.02;

  // ---- architecture (defaults: GPT-2) ----
  NormKind norm = NormKind::LayerNorm;
  double norm_eps = 1e-5;
  PositionKind position = PositionKind::Learned;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  MlpKind mlp = MlpKind::Gelu;
  int64_t intermediate_size = 0;  // MLP width (SwiGLU: of gate and of up); 0 = 4 * n_embd
  int64_t n_kv_head = 0;          // key/value heads; 0 = n_head
  std::optional<bool> qkv_bias;   // biases of the q/k/v projections; unset = bias

  // Throws ValueError naming the known presets for an unknown name.
  static GPTConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  // The model section of a run config (after config::apply_defaults); vocab_size is taken as is
  // (the trainer pads it for the layout).
  static GPTConfig from_model_config(const config::ModelConfig& m);
  // The inverse: a model section with every field set (preset "custom"; vocab_size as is).
  config::ModelConfig to_model_config() const;

  // Throws ValueError for a config no model can be built from (e.g. n_embd % n_head != 0).
  void validate() const;
  // Throws ValueError unless the heads, kv heads and MLP split over `tp` tensor-parallel ranks:
  // n_head % tp == 0, n_kv_head % tp == 0 or tp % n_kv_head == 0, ffn_size() % tp == 0.
  void validate_layout(int tp) const;
  int64_t head_dim() const { return n_embd / n_head; }
  int64_t kv_heads() const { return n_kv_head > 0 ? n_kv_head : n_head; }
  int64_t ffn_size() const { return intermediate_size > 0 ? intermediate_size : 4 * n_embd; }
  bool has_qkv_bias() const { return qkv_bias.value_or(bias); }
  // q, k, v in one fused projection attn.qkv (every head has its own k/v: GPT-2's layout);
  // otherwise attn.q and a fused attn.kv.
  bool fused_qkv() const { return kv_heads() == n_head; }
  // Columns of the logits: the real vocabulary.
  int64_t logits_size() const { return real_vocab_size > 0 ? real_vocab_size : vocab_size; }
  // Closed-form parameter count of the model this config builds (tied weight counted once).
  int64_t num_parameters() const;
  // Parameters of one block (all its tensors, unsplit).
  int64_t block_parameters() const;
};

}  // namespace loom::models

// GPTConfig: the shape of a GPT-2 family model (layers, heads, width, vocabulary, context) plus
// the regularisation and initialisation knobs. Presets name the four published GPT-2 sizes.
//   GPTConfig c = GPTConfig::preset("gpt2-124m");   // 12 layers, 12 heads, 768 wide
//   c.dropout = 0.1;
//   int64_t n = c.num_parameters();                  // 124,439,808 (tied head)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::models {

struct GPTConfig {
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  int64_t vocab_size = 50257;  // rows of wte / the LM head (possibly padded for fast kernels / TP)
  // Tokens that exist, <= vocab_size; 0 = vocab_size. Rows beyond it are padding: zero at init,
  // never looked up, and not part of the logits (so they take no part in the softmax).
  int64_t real_vocab_size = 0;
  int64_t block_size = 1024;  // maximum sequence length (rows of wpe)
  double dropout = 0.0;       // embedding, attention-probability and residual dropout
  bool bias = true;           // biases in Linear and LayerNorm
  bool tie_embeddings = true; // lm head shares wte.weight
  double init_std = 0.02;

  // Throws ValueError naming the known presets for an unknown name.
  static GPTConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();

  // Throws ValueError for a config no model can be built from (e.g. n_embd % n_head != 0).
  void validate() const;
  int64_t head_dim() const { return n_embd / n_head; }
  // Columns of the logits: the real vocabulary.
  int64_t logits_size() const { return real_vocab_size > 0 ? real_vocab_size : vocab_size; }
  // Closed-form parameter count of the model this config builds (tied weight counted once).
  int64_t num_parameters() const;
};

}  // namespace loom::models

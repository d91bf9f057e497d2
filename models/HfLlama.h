// Hugging Face <-> Loom for the Llama family the GPT model covers (LlamaForCausalLM,
// Qwen2ForCausalLM, MistralForCausalLM): config.json -> GPTConfig, and the state-dict names and
// layouts. Loom fuses what HF keeps apart, in this order:
//   model.embed_tokens.weight                         -> wte.weight (zero rows appended to pad)
//   model.layers.{i}.input_layernorm.weight           -> blocks.{i}.ln_1.weight
//   model.layers.{i}.self_attn.{q,k,v}_proj.{w,b}     -> blocks.{i}.attn.qkv = [q; k; v]
//                                      (n_kv_head < n_head: attn.q = q, attn.kv = [k; v])
//   model.layers.{i}.self_attn.o_proj.{w,b}           -> blocks.{i}.attn.proj
//   model.layers.{i}.post_attention_layernorm.weight  -> blocks.{i}.ln_2.weight
//   model.layers.{i}.mlp.{gate,up}_proj.{w,b}         -> blocks.{i}.mlp.fc = [gate; up]
//   model.layers.{i}.mlp.down_proj.{w,b}              -> blocks.{i}.mlp.proj
//   model.norm.weight -> ln_f.weight;  lm_head.weight -> lm_head.weight (untied only)
// Weights are (out, in) on both sides, so no transposes. The io/ layer (safetensors, init_from
// "hf:", loom convert) is meant to call these.
//   GPTConfig c = hf_llama_config(read_file(dir + "/config.json"), dir + "/config.json");
//   std::map<std::string, Tensor> loom = hf_llama_to_loom(hf_tensors, c);
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"
#include "models/GPTConfig.h"

namespace loom::models {

// The architectures (config.json "architectures") these functions accept.
std::vector<std::string> hf_llama_architectures();

// config.json text -> the GPTConfig of that model (vocab_size unpadded, dropout 0). Fields absent
// from the file take the transformers class defaults. Throws ValueError naming `where` and the
// field for an unsupported architecture or value (sliding-window attention, rope types other than
// default / linear / llama3, an activation other than silu, bias combinations Loom cannot hold).
GPTConfig hf_llama_config(const std::string& config_json, const std::string& where);

// HF tensors by name -> Loom's logical tensors for `c` (contiguous copies). The embedding and an
// untied head get zero rows up to c.vocab_size. Throws ValueError naming a missing tensor or one
// with the wrong shape, and any HF tensor left unused (rotary inv_freq buffers are ignored).
std::map<std::string, Tensor> hf_llama_to_loom(const std::map<std::string, Tensor>& hf,
                                               const GPTConfig& c);
// The inverse: Loom's logical tensors -> HF names (padded vocabulary rows dropped; a tied model
// has no lm_head.weight, as transformers' save_pretrained writes it).
std::map<std::string, Tensor> loom_to_hf_llama(const std::map<std::string, Tensor>& loom,
                                               const GPTConfig& c);

}  // namespace loom::models

// HfReader: a Hugging Face GPT-2 or Llama / Qwen2 / Mistral directory (config.json +
// model.safetensors or sharded safetensors) as Loom-named logical tensors, any piece of which is
// read from byte ranges of the safetensors files: HF layouts (Conv1D weights stored transposed,
// the fused c_attn, Llama's separate q/k/v and gate/up stacked into one Loom tensor) are converted
// into the Loom piece in bounded chunks (a few MiB), so a rank that owns part of a tensor never
// holds the whole HF tensor. Opening checks config.json and every header (names, shapes, float
// dtypes, nothing unmapped) without reading tensor data. The name table is HfConvert's
// (detail::hf_params); this file only moves bytes.
//   HfReader hf("gpt2/");
//   Tensor mine = hf.read("blocks.0.attn.qkv.weight", p.meta.spec);   // f32, this rank's rows
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/HfConvert.h"
#include "io/Safetensors.h"
#include "io/TensorSource.h"

namespace loom::io {

class HfReader final : public TensorSource {
 public:
  // Reads config.json and the safetensors headers of `hf_dir`; CheckpointError naming the file,
  // the tensor and the field on anything Loom's GPT cannot load (as hf_to_loom documents).
  explicit HfReader(const std::string& hf_dir);
  HfReader(const HfReader&) = delete;
  HfReader& operator=(const HfReader&) = delete;

  const models::GPTConfig& config() const { return cfg_.config; }  // vocab_size unpadded
  int64_t vocab_size() const { return cfg_.vocab_size; }
  const std::string& hf_config_json() const { return cfg_.json; }
  const HfTokenizerFiles& tokenizer() const { return tokenizer_; }
  const std::vector<detail::HfParam>& params() const { return params_; }  // the Loom tensors

  const std::string& where() const override { return dir_; }
  std::optional<TensorInfo> info(const std::string& loom_name) const override;  // f32
  // The piece as f32. Reading a piece of the tied embedding also checks the same piece of an
  // lm_head.weight the directory carries equals it (CheckpointError otherwise).
  Tensor read(const std::string& loom_name, const ShardSpec& piece) const override;
  uint64_t bytes_read() const override { return bytes_read_.load(); }

 private:
  struct Part {  // one HF tensor: Loom rows [row0, row0 + rows) of the tensor it is part of
    const SafetensorsFile* file;
    const SafetensorsEntry* entry;
    int64_t row0, rows;
  };
  struct Source {  // where one Loom tensor's HF tensors lie
    const detail::HfParam* param;
    std::vector<Part> parts;
  };
  Source source(const std::string& loom_name) const;
  Source source_of(const detail::HfParam& p, const std::vector<std::string>& stored) const;
  void read_into(const Source& s, const ShardSpec& piece, Tensor& out) const;
  void copy_rect(const Source& s, int64_t r0, int64_t r1, int64_t c0, int64_t c1, Tensor dst) const;
  void copy_part(const Part& part, bool transposed, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                 Tensor dst) const;

  std::string dir_;
  detail::HfConfig cfg_;
  HfTokenizerFiles tokenizer_;
  SafetensorsDir files_;
  std::vector<detail::HfParam> params_;
  std::map<std::string, std::vector<std::string>> hf_name_;  // Loom name -> HF names as stored
  std::string tied_head_;  // HF name of an lm_head.weight a tied model carries ("" if none)
  mutable std::atomic<uint64_t> bytes_read_{0};
};

}  // namespace loom::io

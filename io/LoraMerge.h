// LoRA checkpoints: a run with a `lora { }` block saves its adapters alone ("model/<layer>.lora_A",
// "model/<layer>.lora_B"), its base model being the run's init_from. merge_lora_checkpoint turns
// such a checkpoint into the plain model it stands for: the base's tensors, each adapted weight
// replaced by W + (alpha/r) B A (parallel/tensor/Lora.h), so an export is an ordinary model.
//   Checkpoint ck = load_checkpoint(dir, LoadOptions::weights_only());
//   merge_lora_checkpoint(ck, dir);   // no-op for a checkpoint of a run without LoRA
//   load_pieces(model, MergedLoraSource("runs/sft/checkpoints"), "model/");
#pragma once

#include <string>

#include "io/Checkpoint.h"
#include "io/TensorSource.h"

namespace loom::io {

// Whether the run that wrote ck (its meta "config") trained LoRA adapters.
bool is_lora_checkpoint(const Checkpoint& ck);

// For a LoRA checkpoint: adds the base model's tensors as "model/<name>" (from the run's
// init_from: "hf:DIR", or a Loom checkpoint, itself merged when it is a LoRA one), replaces each
// adapted weight by the merged one, drops the adapters and every non-"model/" tensor (optimizer
// state), and drops the lora block from meta "config". CheckpointError naming `dir` when the base
// cannot be read or lacks an adapted weight. Other checkpoints are left as they are.
void merge_lora_checkpoint(Checkpoint& ck, const std::string& dir);

// A Loom checkpoint (a step directory or a root: its latest) as the merged model it stands for:
// merge_lora_checkpoint's tensors held in memory, any piece cut from them. What init_from a LoRA
// run's checkpoint reads (a DPO stage after a LoRA SFT stage). Each rank holds the whole model.
class MergedLoraSource final : public TensorSource {
 public:
  explicit MergedLoraSource(const std::string& source);
  std::optional<TensorInfo> info(const std::string& name) const override;
  Tensor read(const std::string& name, const ShardSpec& piece) const override;
  const std::string& where() const override { return where_; }
  uint64_t bytes_read() const override { return bytes_read_; }

 private:
  std::string where_;
  Checkpoint ck_;
  mutable uint64_t bytes_read_ = 0;
};

}  // namespace loom::io

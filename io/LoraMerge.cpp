// Merging a LoRA checkpoint's adapters into its base model (LoraMerge.h).
#include "io/LoraMerge.h"

#include <filesystem>
#include <map>

#include "config/ConfigLoader.h"
#include "core/util/Check.h"
#include "io/HfConvert.h"
#include "io/HfSource.h"
#include "parallel/tensor/Lora.h"

namespace loom::io {

namespace {

constexpr const char* kA = ".lora_A";
constexpr const char* kB = ".lora_B";

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() > tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The step directory of a Loom checkpoint `source` (itself, or the latest under a root).
std::string step_dir_of(const std::string& source, const std::string& dir) {
  const std::string step = checkpoint_step_dir(source);
  LOOM_CHECK_T(CheckpointError, !step.empty(), "checkpoint ", dir, ": its base model init_from=",
               source, " holds no complete Loom checkpoint");
  return step;
}

// The logical tensors (Loom names, no "model/") of init_from `source`, merged when LoRA.
std::map<std::string, Tensor> base_tensors(const std::string& source, const std::string& dir) {
  LOOM_CHECK_T(CheckpointError, !source.empty(), "checkpoint ", dir, ": a LoRA checkpoint needs "
               "its base model, but its config has init_from=\"\"");
  if (source.rfind("hf:", 0) == 0) return hf_to_loom(resolve_hf_dir(source.substr(3))).params;
  const std::string step = step_dir_of(source, dir);
  Checkpoint base = load_checkpoint(step, LoadOptions::weights_only());
  merge_lora_checkpoint(base, step);
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : base.tensors)
    if (name.rfind("model/", 0) == 0) out[name.substr(6)] = t;
  return out;
}

}  // namespace

bool is_lora_checkpoint(const Checkpoint& ck) {
  auto it = ck.meta.find("config");
  return it != ck.meta.end() && config::parse_text(it->second, "meta.json:config").has_lora();
}

void merge_lora_checkpoint(Checkpoint& ck, const std::string& dir) {
  if (!is_lora_checkpoint(ck)) return;
  config::RunConfig run = config::parse_text(ck.meta.at("config"), dir + "/meta.json:config");
  const config::LoraConfig& l = run.lora();
  tp::LoraOptions o;
  o.rank = l.has_rank() ? l.rank() : o.rank;
  o.alpha = l.has_alpha() ? l.alpha() : o.alpha;
  std::map<std::string, Tensor> model = base_tensors(run.init_from(), dir);
  std::string problems;
  for (const auto& [key, A] : ck.tensors) {
    if (key.rfind("model/", 0) != 0 || !ends_with(key, kA)) continue;
    const std::string layer = key.substr(6, key.size() - 6 - std::string(kA).size());
    auto B = ck.tensors.find("model/" + layer + kB);
    auto W = model.find(layer + ".weight");
    if (B == ck.tensors.end() || W == model.end()) {
      problems += "\n  " + layer + (B == ck.tensors.end() ? ": no lora_B" : ": no base weight");
      continue;
    }
    W->second = tp::lora_merge(W->second.to(Device::cpu()), A.to(Device::cpu()),
                               B->second.to(Device::cpu()), o);
  }
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", dir, ": cannot merge its LoRA "
               "adapters into the base init_from=", run.init_from(), ":", problems);
  for (const auto& [key, t] : ck.tensors)  // trained tensors that are not adapters win
    if (key.rfind("model/", 0) == 0 && !ends_with(key, kA) && !ends_with(key, kB))
      model[key.substr(6)] = t;
  ck.tensors.clear();
  for (auto& [name, t] : model) ck.tensors["model/" + name] = std::move(t);
  run.clear_lora();
  ck.meta["config"] = config::to_text(run);
}

MergedLoraSource::MergedLoraSource(const std::string& source)
    : where_(step_dir_of(source, source)),
      ck_(load_checkpoint(where_, LoadOptions::weights_only())) {
  merge_lora_checkpoint(ck_, where_);
}

std::optional<TensorInfo> MergedLoraSource::info(const std::string& name) const {
  auto it = ck_.tensors.find(name);
  if (it == ck_.tensors.end()) return std::nullopt;
  return TensorInfo{it->second.shape(), it->second.dtype()};
}

Tensor MergedLoraSource::read(const std::string& name, const ShardSpec& piece) const {
  auto it = ck_.tensors.find(name);
  LOOM_CHECK_T(CheckpointError, it != ck_.tensors.end(), "checkpoint ", where_,
               " (LoRA, merged): no tensor ", name);
  Tensor out = extract_shard(it->second.to(Device::cpu()), piece).contiguous();
  bytes_read_ += uint64_t(out.numel()) * uint64_t(dtype_size(out.dtype()));
  return out;
}

}  // namespace loom::io

// Where `loom generate` and `loom eval` get a model: a Loom checkpoint (a step_* directory, or a
// root whose newest complete checkpoint is used; the model shape comes from its meta "config"), or
// for eval "hf:DIR", a Hugging Face GPT-2 directory (io/HfReader.h).
//   std::string step = resolve_step_dir("loom eval", "runs/tiny/checkpoints");
//   LoadedModel m = load_model("hf:gpt2", Device::cpu(), "loom eval");
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/Config.pb.h"
#include "core/tensor/Device.h"
#include "io/CheckpointReader.h"
#include "models/GPT.h"

namespace loom::cli {

// DIR itself when it holds a manifest, else the newest complete checkpoint under DIR;
// CheckpointError naming DIR otherwise. `who` prefixes messages ("loom generate: --checkpoint").
std::string resolve_step_dir(const std::string& who, const std::string& dir);

// The run's checkpoint-path fields that are set (init_from, ppo.reward_model, ppo.critic_init,
// dpo.reference): (field name, its value), to read or rewrite.
std::vector<std::pair<const char*, std::string*>> checkpoint_fields(config::RunConfig& c);

// Each of those fields naming a checkpoint root (a directory of step_* checkpoints, as
// checkpoint.dir writes them) becomes the step directory loading would take (io::
// checkpoint_step_dir); "hf:DIR", "@stage" and paths that are no checkpoint stay as they are.
void resolve_checkpoint_roots(config::RunConfig& c);

// The RunConfig a checkpoint was trained with (its meta "config"); CheckpointError if absent.
config::RunConfig checkpoint_config(const io::CheckpointReader& ck, const std::string& who);

struct LoadedModel {
  std::unique_ptr<models::GPT> model;  // in eval mode, weights loaded
  Device device = Device::cpu();       // where the model lives
  std::string description;             // the step directory, or "hf:DIR"
  std::optional<config::RunConfig> config;  // a Loom checkpoint's run config (meta "config")
};

// A model with its weights from `source` (a Loom checkpoint dir, or "hf:DIR") on `device`, in
// eval mode (dropout off). `device_name` "" takes the checkpoint config's device (CPU for hf:).
LoadedModel load_model(const std::string& source, const std::string& device_name,
                       const std::string& who);

}  // namespace loom::cli

// Loading a model for inference from a Loom checkpoint or a Hugging Face directory (see
// ModelSource.h).
#include "launch/cli/ModelSource.h"

#include <filesystem>

#include "config/ConfigLoader.h"
#include "core/util/Check.h"
#include "io/HfReader.h"
#include "io/HfSource.h"
#include "train/Trainer.h"

namespace loom::cli {

namespace fs = std::filesystem;

std::string resolve_step_dir(const std::string& who, const std::string& dir) {
  LOOM_CHECK_T(CheckpointError, fs::is_directory(dir), who, " ", dir, " is not a directory");
  std::string step = io::checkpoint_step_dir(dir);
  LOOM_CHECK_T(CheckpointError, !step.empty(), who, ": expected a checkpoint step_* ",
               "directory or a root holding a complete one, got ", dir, " (no checkpoint found)");
  return step;
}

std::vector<std::pair<const char*, std::string*>> checkpoint_fields(config::RunConfig& c) {
  std::vector<std::pair<const char*, std::string*>> out;
  if (c.has_init_from()) out.emplace_back("init_from", c.mutable_init_from());
  if (c.ppo().has_reward_model())
    out.emplace_back("ppo.reward_model", c.mutable_ppo()->mutable_reward_model());
  if (c.ppo().has_critic_init())
    out.emplace_back("ppo.critic_init", c.mutable_ppo()->mutable_critic_init());
  if (c.dpo().has_reference())
    out.emplace_back("dpo.reference", c.mutable_dpo()->mutable_reference());
  return out;
}

void resolve_checkpoint_roots(config::RunConfig& c) {
  for (auto& [field, value] : checkpoint_fields(c)) {
    if (value->empty() || (*value)[0] == '@' || value->rfind("hf:", 0) == 0) continue;
    const std::string step = io::checkpoint_step_dir(*value);
    LOOM_CHECK_T(CheckpointError, !step.empty() || !fs::is_directory(*value), field, "=", *value,
                 ": expected a Loom checkpoint (a step_* directory with MANIFEST.json, or a ",
                 "checkpoint root holding one), got a directory with neither");
    if (!step.empty()) *value = step;
  }
}

config::RunConfig checkpoint_config(const io::CheckpointReader& ck, const std::string& who) {
  auto it = ck.meta().find("config");
  LOOM_CHECK_T(CheckpointError, it != ck.meta().end(), who, ": checkpoint ", ck.where(),
               " has no meta \"config\" (the model shape is unknown)");
  return config::parse_text(it->second, ck.where() + "/meta.json:config");
}

namespace {

Device device_named(const std::string& name, const std::string& who) {
  LOOM_CHECK_T(ConfigError, name == "cpu" || name == "cuda", who, ": expected --device cpu or ",
               "cuda, got \"", name, "\"");
  return name == "cuda" ? Device::cuda(0) : Device::cpu();
}

LoadedModel load_hf(const std::string& dir, const std::string& device_name,
                    const std::string& who) {
  io::HfReader hf(dir);
  models::GPTConfig gc = hf.config();
  gc.real_vocab_size = hf.vocab_size();
  gc.dropout = 0.0;
  LoadedModel m;
  m.device = device_named(device_name.empty() ? "cpu" : device_name, who);
  m.model = std::make_unique<models::GPT>(gc, models::Layout{}, DType::F32, m.device);
  train::load_pieces(*m.model, hf, "");  // every parameter
  m.description = "hf:" + dir;
  return m;
}

}  // namespace

LoadedModel load_model(const std::string& source, const std::string& device_name,
                       const std::string& who) {
  LoadedModel m;
  if (source.rfind("hf:", 0) == 0) {
    m = load_hf(io::resolve_hf_dir(source.substr(3)), device_name, who);
  } else {
    const std::string step_dir = resolve_step_dir(who, source);
    const io::CheckpointReader ck(step_dir, io::LoadOptions::weights_only());
    const config::RunConfig cfg = checkpoint_config(ck, who);
    const std::string dev = !device_name.empty()                      ? device_name
                            : cfg.device() == config::RunConfig::CUDA ? "cuda"
                                                                      : "cpu";
    m.device = device_named(dev, who);
    m.model = std::make_unique<models::GPT>(train::gpt_config_from(cfg), models::Layout{},
                                            DType::F32, m.device);
    train::load_checkpoint_model(*m.model, cfg, ck);  // a LoRA run: base + adapters
    m.description = step_dir;
    m.config = cfg;
  }
  m.model->eval();
  return m;
}

}  // namespace loom::cli

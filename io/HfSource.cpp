// "hf:" sources (see HfSource.h): the Hugging Face cache layout, and the model section from
// config.json checked field by field (protobuf reflection over the fields the run sets).
#include "io/HfSource.h"

#include <google/protobuf/text_format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "core/util/Check.h"
#include "io/Checkpoint.h"
#include "io/HfConvert.h"

namespace loom::io {

namespace fs = std::filesystem;
namespace pb = google::protobuf;

namespace {

// The hub cache directories searched, in order.
std::vector<fs::path> cache_roots() {
  std::vector<fs::path> roots;
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) roots.emplace_back(c);
  if (const char* h = std::getenv("HF_HOME"); h && *h) roots.push_back(fs::path(h) / "hub");
  if (const char* home = std::getenv("HOME"); home && *home)
    roots.push_back(fs::path(home) / ".cache" / "huggingface" / "hub");
  return roots;
}

// The snapshot of one cached model: refs/main's commit, else the only snapshot; "" if none.
std::string snapshot_of(const fs::path& model_dir) {
  const fs::path snaps = model_dir / "snapshots";
  if (!fs::is_directory(snaps)) return "";
  std::ifstream ref(model_dir / "refs" / "main");
  std::string rev;
  if (ref >> rev && fs::is_directory(snaps / rev)) return (snaps / rev).string();
  std::vector<fs::path> all;
  for (const auto& e : fs::directory_iterator(snaps))
    if (e.is_directory()) all.push_back(e.path());
  LOOM_CHECK_T(CheckpointError, all.size() <= 1, "hf: ", snaps.string(), " holds ", all.size(),
               " snapshots and refs/main names none of them; expected one, or pass the ",
               "snapshot directory itself");
  return all.empty() ? "" : all[0].string();
}

bool is_repo_id(const std::string& s) {
  const size_t slash = s.find('/');
  return slash != std::string::npos && slash > 0 && slash + 1 < s.size() &&
         s.find('/', slash + 1) == std::string::npos && s[0] != '.' && s[0] != '~';
}

// Appends "model.F=X but DIR has Y" for each field set in `given` (skipping `skip`) whose value
// differs in `hf`; sub-messages field by field.
void compare(const pb::Message& given, const pb::Message& hf, const std::string& prefix,
             const std::set<std::string>& skip, const std::string& dir, std::string& problems) {
  std::vector<const pb::FieldDescriptor*> fields;
  given.GetReflection()->ListFields(given, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const std::string name = prefix + f->name();
    if (skip.count(name)) continue;
    if (f->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
      compare(given.GetReflection()->GetMessage(given, f), hf.GetReflection()->GetMessage(hf, f),
              name + ".", skip, dir, problems);
      continue;
    }
    std::string a, b;
    pb::TextFormat::PrintFieldValueToString(given, f, -1, &a);
    pb::TextFormat::PrintFieldValueToString(hf, f, -1, &b);
    if (a != b) problems += "\n  model." + name + "=" + a + " but " + dir + " has " + b;
  }
}

}  // namespace

std::string resolve_hf_dir(const std::string& spec) {
  if (fs::is_directory(spec)) return spec;
  std::string searched;
  if (is_repo_id(spec)) {
    const std::string cached = "models--" + spec.substr(0, spec.find('/')) + "--" +
                               spec.substr(spec.find('/') + 1);
    for (const fs::path& root : cache_roots()) {
      const std::string snap = snapshot_of(root / cached);
      if (!snap.empty()) return snap;
      searched += "\n  " + (root / cached / "snapshots").string();
    }
  }
  throw CheckpointError("hf:" + spec + ": expected a Hugging Face model directory" +
                        (searched.empty() ? std::string(", got no such directory")
                                          : ", or ORG/NAME in the local cache; searched:" +
                                                searched + "\n  (Loom never downloads; fetch "
                                                "it with huggingface-cli download first)"));
}

namespace {

// The model section an init_from source was made with: an HF directory's config.json, or the
// run config a Loom checkpoint recorded in its meta.json. nullopt: the source has no shape to give
// ("@stage" references, which the pipeline resolves later, or a checkpoint without a config).
std::optional<config::ModelConfig> source_model(const std::string& init, std::string& where,
                                                bool& rope) {
  if (init.rfind("hf:", 0) == 0 && init.size() > 3) {
    where = resolve_hf_dir(init.substr(3));
    const detail::HfConfig hc = detail::read_hf_config(where);
    models::GPTConfig g = hc.config;
    g.vocab_size = hc.vocab_size;
    rope = g.position == models::PositionKind::Rope;
    return g.to_model_config();
  }
  if (init.empty() || init[0] == '@' || !fs::is_directory(init)) return std::nullopt;
  // A step directory, or a root whose newest complete checkpoint is used (as when loading).
  where = checkpoint_step_dir(init);
  if (where.empty()) return std::nullopt;
  const CheckpointMeta meta = read_checkpoint_meta(where);
  auto it = meta.entries.find("config");
  if (it == meta.entries.end()) return std::nullopt;
  config::ModelConfig m = config::parse_text(it->second, where + "/meta.json:config").model();
  rope = m.position() == config::ModelConfig::ROPE;
  m.clear_preset();
  return m;
}

}  // namespace

void model_from_init(config::RunConfig& cfg) {
  std::string dir;
  bool rope = false;
  std::optional<config::ModelConfig> source = source_model(cfg.init_from(), dir, rope);
  if (!source) return;
  config::ModelConfig hf = *source;
  config::ModelConfig given = cfg.model();
  if (given.has_preset() && given.preset() != "custom") config::model_defaults(given);
  std::set<std::string> skip = {"preset", "dropout", "init_std", "vocab_pad_multiple"};
  std::string problems;
  if (rope && given.has_block_size()) {  // no position table: any context up to the model's
    skip.insert("block_size");
    if (given.block_size() > hf.block_size())
      problems += "\n  model.block_size=" + std::to_string(given.block_size()) + " but " + dir +
                  " has " + std::to_string(hf.block_size()) + " positions";
  }
  compare(given, hf, "", skip, dir, problems);
  LOOM_CHECK_T(ConfigError, problems.empty(), "init_from=", cfg.init_from(), ": the model ",
               "section does not match the model it names:", problems,
               "\n  hint: leave these fields out; the model section comes from the source");
  config::ModelConfig* m = cfg.mutable_model();
  hf.clear_dropout();
  hf.clear_init_std();
  hf.clear_vocab_pad_multiple();
  if (rope && m->has_block_size()) hf.set_block_size(m->block_size());
  if (m->has_dropout()) hf.set_dropout(m->dropout());
  if (m->has_init_std()) hf.set_init_std(m->init_std());
  if (m->has_vocab_pad_multiple()) hf.set_vocab_pad_multiple(m->vocab_pad_multiple());
  *m = hf;
}

}  // namespace loom::io

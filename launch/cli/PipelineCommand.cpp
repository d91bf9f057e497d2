// `loom pipeline PIPELINE.pbtxt`: runs the stages of a pipeline (config/Pipeline.proto) one
// after another in this process, e.g. pretrain -> sft -> reward -> ppo. Every stage's RunConfig is
// resolved and validated before the first one starts, with "@stage" references (init_from,
// ppo.reward_model, ppo.critic_init, dpo.reference) replaced by that earlier stage's final
// checkpoint, so a bad reference or field fails at once (exit 2). <output_dir>/pipeline_state.txt
// records each finished stage (name, config hash, checkpoint); a re-run skips those and continues
// with the first unfinished stage, which resumes from its own newest checkpoint (checkpoint.resume
// "auto", the default). Started by mpirun/srun, every stage trains data parallel over all ranks.
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/util/Check.h"
#include "core/util/StopSignal.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "launch/cli/ModelSource.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "config/ConfigOverride.h"
#include "config/ConfigValidate.h"
#include "config/Pipeline.pb.h"
#include "parallel/comm/MpiCommunicator.h"
#include "parallel/data/DistributedRuntime.h"
#include "io/HfSource.h"
#include "io/Checkpoint.h"
#include "rlhf/Stages.h"
#include "train/Trainer.h"

namespace loom::cli {

namespace {

namespace fs = std::filesystem;
namespace pb = google::protobuf;
using config::Pipeline;
using config::PipelineStage;
using config::RunConfig;

constexpr const char* kStateFile = "pipeline_state.txt";

// One stage, resolved: its RunConfig with references replaced, defaults applied and validated.
struct StagePlan {
  std::string name;
  RunConfig cfg;
  std::string hash;              // config::config_hash(cfg)
  std::string final_checkpoint;  // <checkpoint.dir>/step_<max_steps>: what "@name" means
};

// A finished stage as recorded in the state file.
struct DoneStage {
  std::string hash, checkpoint;
};

class ParseErrors : public pb::io::ErrorCollector {
 public:
  explicit ParseErrors(std::string source) : source_(std::move(source)) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    text_ += detail::str_cat(text_.empty() ? "" : "\n", source_, ":", line + 1, ":", column + 1,
                             ": ", message);
  }
  const std::string& text() const { return text_; }

 private:
  std::string source_, text_;
};

Pipeline load_pipeline(const std::string& path) {
  // A missing, unreadable or directory path is a ConfigError naming it.
  const std::string text = config::read_config_file(path, "pipeline");
  Pipeline p;
  if (fs::path(path).extension() == ".json") {
    pb::util::JsonParseOptions opts;
    auto status = pb::util::JsonStringToMessage(text, &p, opts);
    LOOM_CHECK_T(ConfigError, status.ok(), "pipeline: ", path,
                 ": invalid JSON: ", std::string(status.message()));
    return p;
  }
  ParseErrors errors(path);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  bool ok = parser.ParseFromString(text, &p);
  LOOM_CHECK_T(ConfigError, ok && errors.text().empty(),
               "pipeline: ", errors.text().empty() ? path + ": parse error" : errors.text());
  return p;
}

bool valid_stage_name(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

// Replaces "@name" in the reference fields by that earlier stage's final checkpoint.
void resolve_references(RunConfig& c, const std::string& stage, const std::vector<StagePlan>& done,
                        const Pipeline& p) {
  for (auto& [field, v] : checkpoint_fields(c)) {
    if (v->empty() || (*v)[0] != '@') continue;
    const std::string ref = v->substr(1);
    const StagePlan* hit = nullptr;
    for (const StagePlan& s : done)
      if (s.name == ref) hit = &s;
    if (hit != nullptr) {
      *v = hit->final_checkpoint;
      continue;
    }
    std::string earlier;
    for (const StagePlan& s : done) earlier += (earlier.empty() ? "" : ", ") + s.name;
    bool later = false;
    for (const PipelineStage& s : p.stage()) later = later || s.name() == ref;
    LOOM_CHECK_T(ConfigError, false, "pipeline: stage \"", stage, "\": ", field, "=\"@",
                 ref, "\": expected the name of an earlier stage (",
                 earlier.empty() ? std::string("none") : earlier, "), got \"", ref, "\"",
                 later ? " (a stage can only use checkpoints of stages listed before it)" : "");
  }
}

// The stage's RunConfig: file, then inline fields, then its own and the command line's overrides.
RunConfig stage_config(const PipelineStage& st, const fs::path& base,
                       const std::vector<std::string>& sets) {
  RunConfig c;
  if (st.has_config()) {
    fs::path file = st.config();
    if (file.is_relative()) file = base / file;
    c = config::load_file(file.string());
  }
  c.MergeFrom(st.run());
  config::apply_overrides(c, std::vector<std::string>(st.set().begin(), st.set().end()));
  config::apply_overrides(c, sets);
  return c;
}

// "--set a.b=v" applies to every stage, "--set STAGE:a.b=v" to that stage only.
std::map<std::string, std::vector<std::string>> split_sets(const std::vector<std::string>& sets,
                                                           const Pipeline& p) {
  std::map<std::string, std::vector<std::string>> out;
  for (const PipelineStage& s : p.stage()) out[s.name()];
  for (const std::string& s : sets) {
    size_t colon = s.find(':'), eq = s.find('=');
    if (colon == std::string::npos || (eq != std::string::npos && eq < colon)) {
      for (auto& [name, v] : out) v.push_back(s);
      continue;
    }
    std::string stage = s.substr(0, colon);
    LOOM_CHECK_T(ConfigError, out.count(stage), "pipeline: --set ", s,
                 ": expected STAGE:field=value with a stage of this pipeline, got stage \"", stage,
                 "\"");
    out[stage].push_back(s.substr(colon + 1));
  }
  return out;
}

void check_stage_names(const Pipeline& p, const std::string& path) {
  LOOM_CHECK_T(ConfigError, p.stage_size() > 0, "pipeline: ", path,
               ": expected at least one `stage { name: ... config: ... }`, got none");
  for (int i = 0; i < p.stage_size(); ++i) {
    const PipelineStage& s = p.stage(i);
    LOOM_CHECK_T(ConfigError, valid_stage_name(s.name()), "pipeline: ", path, ": stage ", i + 1,
                 ": expected a name of letters, digits, '_' or '-', got \"", s.name(), "\"");
    LOOM_CHECK_T(ConfigError, s.has_config() || s.has_run(), "pipeline: stage \"", s.name(),
                 "\": expected `config: \"FILE\"` or an inline `run { ... }`, got neither");
    for (int j = 0; j < i; ++j)
      LOOM_CHECK_T(ConfigError, p.stage(j).name() != s.name(), "pipeline: stage name \"", s.name(),
                   "\" is used twice; expected unique names");
  }
}

// Resolves every stage before any runs, so that config errors appear at once.
std::vector<StagePlan> plan_stages(const Pipeline& p, const std::string& path,
                                   const std::vector<std::string>& sets, int world) {
  check_stage_names(p, path);
  auto per_stage = split_sets(sets, p);
  const fs::path base = fs::path(path).parent_path();
  std::vector<StagePlan> plans;
  for (const PipelineStage& st : p.stage()) {
    StagePlan sp;
    sp.name = st.name();
    try {
      sp.cfg = stage_config(st, base, per_stage[st.name()]);
      if (!sp.cfg.has_name()) sp.cfg.set_name(st.name());
      if (!sp.cfg.has_output_dir())
        sp.cfg.set_output_dir((fs::path(p.output_dir()) / st.name()).string());
      resolve_references(sp.cfg, st.name(), plans, p);
      io::model_from_init(sp.cfg);  // an "hf:" start gives the model section
      config::apply_defaults(sp.cfg, world);
      config::validate(sp.cfg, world);
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      if (what.rfind("pipeline:", 0) == 0) throw;
      throw ConfigError("pipeline: stage \"" + st.name() + "\": " + what);
    }
    sp.hash = config::config_hash(sp.cfg);
    sp.final_checkpoint =
        (fs::path(sp.cfg.checkpoint().dir()) / io::checkpoint_dir_name(sp.cfg.max_steps()))
            .string();
    for (const StagePlan& q : plans)
      LOOM_CHECK_T(ConfigError, q.cfg.checkpoint().dir() != sp.cfg.checkpoint().dir(),
                   "pipeline: stages \"", q.name, "\" and \"", sp.name,
                   "\" write checkpoints to the same directory ", sp.cfg.checkpoint().dir(),
                   "; expected one per stage (leave output_dir unset for <output_dir>/<stage>)");
    plans.push_back(std::move(sp));
  }
  return plans;
}

std::map<std::string, DoneStage> read_state(const fs::path& file) {
  std::map<std::string, DoneStage> done;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string name;
    DoneStage d;
    if (!(words >> name >> d.hash) || name[0] == '#') continue;
    std::getline(words >> std::ws, d.checkpoint);
    done[name] = d;
  }
  return done;
}

// Rewritten whole and renamed into place, so an interrupted write leaves the old state.
void write_state(const fs::path& file, const std::vector<StagePlan>& plans,
                 const std::map<std::string, DoneStage>& done) {
  fs::create_directories(file.parent_path().empty() ? fs::path(".") : file.parent_path());
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << "# loom pipeline: finished stages (name, config hash, final checkpoint)\n";
    for (const StagePlan& s : plans) {
      auto it = done.find(s.name);
      if (it != done.end())
        out << s.name << " " << it->second.hash << " " << it->second.checkpoint << "\n";
    }
    LOOM_CHECK_T(Error, out.good(), "pipeline: cannot write ", tmp.string());
  }
  fs::rename(tmp, file);
}

// True when the state file says `s` finished with this config and its checkpoint is still there.
bool already_done(const StagePlan& s, const std::map<std::string, DoneStage>& done,
                  const fs::path& state_file) {
  auto it = done.find(s.name);
  if (it == done.end()) return false;
  LOOM_CHECK_T(ConfigError, it->second.hash == s.hash, "pipeline: stage \"", s.name,
               "\" finished with another config (hash ", it->second.hash, ", now ", s.hash,
               "); to run it again with this one, remove its output ", s.cfg.output_dir(),
               " and the stages after it, and its line in ", state_file.string());
  return fs::exists(it->second.checkpoint);
}

int run_pipeline(const Verb& a, std::shared_ptr<Communicator> world) {
  LOOM_CHECK_T(ConfigError, a.positional().size() == 1,
               "loom pipeline: expected exactly one PIPELINE file (.pbtxt or .json), got ",
               a.positional().size(), " positional arguments; see `loom pipeline --help`");
  const std::string path = a.positional()[0];
  Pipeline p = load_pipeline(path);
  if (!p.has_name()) p.set_name(fs::path(path).stem().string());
  if (!p.has_output_dir()) p.set_output_dir((fs::path("runs") / p.name()).string());
  std::vector<StagePlan> plans = plan_stages(p, path, a.list("set"), world ? world->size() : 1);
  const std::string until = a.get("until", "");
  bool until_found = until.empty();
  for (const StagePlan& s : plans) until_found = until_found || s.name == until;
  LOOM_CHECK_T(ConfigError, until_found, "loom pipeline: --until ", until,
               ": expected a stage of this pipeline");
  const bool writer = !world || world->rank() == 0;
  const fs::path state_file = fs::path(p.output_dir()) / kStateFile;
  std::map<std::string, DoneStage> done = read_state(state_file);
  const int n = int(plans.size());
  for (int i = 0; i < n; ++i) {
    const StagePlan& s = plans[i];
    const std::string kind(RunConfig::Stage_Name(s.cfg.stage()));
    const char* stage_kind = kind.c_str();
    if (writer && a.flag("dry-run"))
      std::printf("loom pipeline: stage %d/%d %s (%s, %lld steps): init_from \"%s\", output %s\n",
                  i + 1, n, s.name.c_str(), stage_kind, (long long)s.cfg.max_steps(),
                  s.cfg.init_from().c_str(), s.cfg.output_dir().c_str());
    if (a.flag("dry-run")) continue;
    if (already_done(s, done, state_file)) {
      if (writer)
        std::printf("loom pipeline: stage %d/%d %s: already done (checkpoint %s)\n", i + 1, n,
                    s.name.c_str(), done[s.name].checkpoint.c_str());
    } else {
      if (writer) {
        std::printf("loom pipeline: stage %d/%d %s (%s, %lld steps), output %s\n", i + 1, n,
                    s.name.c_str(), stage_kind, (long long)s.cfg.max_steps(),
                    s.cfg.output_dir().c_str());
        std::fflush(stdout);
      }
      RunConfig cfg = s.cfg;  // checkpoint roots as the step directories they stand for
      resolve_checkpoint_roots(cfg);
      train::TrainSummary sum = train::Trainer(cfg, world, rlhf::make_stage).run();
      if (sum.stop_signal != 0) {
        if (writer)
          std::printf("loom pipeline: stage %s stopped by %s after step %lld; checkpoint %s (run "
                      "the pipeline again to continue)\n",
                      s.name.c_str(), stop_signal_name(sum.stop_signal),
                      (long long)sum.last_step, sum.last_checkpoint.c_str());
        return kExitStopped;
      }
      done[s.name] = DoneStage{s.hash, sum.last_checkpoint};
      if (writer) {
        write_state(state_file, plans, done);
        std::printf("loom pipeline: stage %s done (steps %lld-%lld), checkpoint %s\n",
                    s.name.c_str(), (long long)sum.first_step, (long long)sum.last_step,
                    sum.last_checkpoint.c_str());
        std::fflush(stdout);
      }
    }
    if (s.name == until) break;
  }
  return 0;
}

}  // namespace

void add_pipeline(Cli& cli) {
  cli.verb(cli.root(), "pipeline",
           "run several training stages in order (pretrain -> sft -> reward -> ppo)",
           [](const Verb& a) {
             install_stop_handlers();
             return run_with_launcher_world([&](std::shared_ptr<Communicator> world) {
               return run_pipeline(a, std::move(world));
             });
           })
      .positionals("PIPELINE", "the pipeline file (.pbtxt or .json; see config/Pipeline.proto)")
      .list("set", "[STAGE:]FIELD=VALUE",
            "override a field: a.b=v for every stage, STAGE:a.b=v for one stage")
      .value("until", "STAGE", "stop after this stage")
      .boolean("dry-run", "resolve and print the stages without running them");
}

}  // namespace loom::cli

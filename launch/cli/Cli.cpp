// The `loom` command line on CLI11 (see Cli.h).
#include "launch/cli/Cli.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <CLI/CLI.hpp>

#include "core/util/Check.h"

namespace loom::cli {

namespace {

constexpr const char* kDescription =
    "loom - train GPT-style language models (pretrain, SFT, reward, PPO, DPO)";
constexpr const char* kExitCodes =
    "Exit codes: 0 ok, 1 error, 2 config or command-line error, 3 checkpoint error,\n"
    "            4 communication timeout, 5 out of memory, 6 non-finite loss or weights,\n"
    "            7 stopped by SIGTERM / SIGINT / SIGUSR1 after saving a checkpoint.";

// Every subcommand of `app`, in declaration order.
std::vector<CLI::App*> children(CLI::App& app) {
  return app.get_subcommands(std::function<bool(CLI::App*)>());
}

CLI::App* child_named(CLI::App& app, const std::string& name) {
  for (CLI::App* c : children(app))
    if (c->get_name() == name) return c;
  return nullptr;
}

std::string names_of(CLI::App& app) {
  std::string s;
  for (CLI::App* c : children(app)) s += (s.empty() ? "" : ", ") + c->get_name();
  return s;
}

void use_loom_format(CLI::App& app) {
  app.get_formatter()->column_width(36);
  app.set_help_flag("-h,--help", "print this help and exit");
}

// CLI11's message for a parse error, in Loom's form: "loom PATH: what; see `loom PATH --help`".
std::string parse_error_message(const CLI::ParseError& e, const std::string& path) {
  const std::string what = e.what();
  const std::string prefix = path.empty() ? "loom" : "loom " + path;
  const std::string hint = "; see `" + prefix + " --help`";
  // ArgumentMismatch::TypedAtLeast: "--seed: 1 required N missing".
  const size_t colon = what.find(": ");
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) && colon != std::string::npos &&
      what.size() > 8 && what.compare(what.size() - 8, 8, " missing") == 0) {
    const std::string name = what.substr(0, colon);
    const size_t req = what.find(" required ", colon);
    const std::string type =
        req == std::string::npos ? "" : what.substr(req + 10, what.size() - 8 - req - 10);
    return prefix + ": " + name + " expects a value" + (type.empty() ? "" : " (" + type + ")") +
           ", got none" + hint;
  }
  // ArgumentMismatch::AtMost, for positionals: "CONFIG: At Most 1 required but received 2".
  const size_t at_most = what.find(": At Most ");
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) && at_most != std::string::npos) {
    const std::string name = what.substr(0, at_most);
    const size_t n_end = what.find(' ', at_most + 10), got = what.rfind(' ');
    return prefix + ": expected at most " + what.substr(at_most + 10, n_end - at_most - 10) + " " +
           name + " argument(s), got " + what.substr(got + 1) + hint;
  }
  return prefix + ": " + what + hint;
}

}  // namespace

Cli::Cli(std::function<std::string()> version)
    : root_(std::make_unique<CLI::App>(kDescription, "loom")), version_(std::move(version)) {
  use_loom_format(*root_);
  root_->footer(std::string("Run `loom COMMAND --help` for the flags of a command.\n") +
                kExitCodes);
  root_->add_flag("--version", version_asked_,
                  "print the version and the compute backends, and exit");
  root_->require_subcommand(0, 1);
}

Cli::~Cli() = default;

CLI::App& Cli::group(CLI::App& parent, const std::string& name, const std::string& description) {
  CLI::App* g = parent.add_subcommand(name, description);
  use_loom_format(*g);
  g->footer("Run `loom " + name + " COMMAND --help` for the flags of a command.");
  g->require_subcommand(0, 1);
  return *g;
}

Verb& Cli::verb(CLI::App& parent, const std::string& name, const std::string& description,
                Verb::Body body) {
  CLI::App* app = parent.add_subcommand(name, description);
  use_loom_format(*app);
  app->footer(kExitCodes);
  const std::string path = &parent == root_.get() ? name : parent.get_name() + " " + name;
  verbs_.push_back(std::make_unique<Verb>(*app, path, std::move(body)));
  return *verbs_.back();
}

void Cli::respell(const Verb& verb, const std::string& from, const std::string& to) {
  respellings_.push_back({&verb, from, to});
}

std::string Cli::help() const { return root_->help(); }

std::vector<std::string> Cli::resolve(int argc, char** argv, const Verb*& chosen,
                                      std::string& path) const {
  std::vector<std::string> words(argv + 1, argv + argc);
  CLI::App* app = root_.get();
  chosen = nullptr;
  for (const std::string& w : words) {
    if (w.empty() || w[0] == '-') break;  // --help, --version or a flag: CLI11 decides
    CLI::App* next = child_named(*app, w);
    LOOM_CHECK_T(ConfigError, next != nullptr, "loom", path.empty() ? "" : " " + path,
                 ": unknown command \"", w, "\"; expected one of ", names_of(*app), " (see `loom",
                 path.empty() ? "" : " " + path, " --help`)");
    path += (path.empty() ? "" : " ") + w;
    app = next;
    for (const auto& v : verbs_)
      if (&v->app() == app) chosen = v.get();
    if (chosen != nullptr) break;
  }
  for (std::string& w : words)
    for (const Respelling& r : respellings_)
      if (r.verb == chosen && w == r.from) w = r.to;
  return words;
}

int Cli::run(int argc, char** argv) {
  if (argc < 2 || (argc == 2 && std::strcmp(argv[1], "help") == 0)) {
    std::fputs(help().c_str(), stdout);
    // No command is a command-line error (README's exit codes): the usual `loom: error:` line.
    LOOM_CHECK_T(ConfigError, argc >= 2, "loom: expected a command, one of ", names_of(*root_),
                 " (see `loom --help`)");
    return 0;
  }
  const Verb* chosen = nullptr;
  std::string path;
  std::vector<std::string> words = resolve(argc, argv, chosen, path);
  std::reverse(words.begin(), words.end());  // CLI11 parses a reversed vector
  try {
    root_->parse(words);
  } catch (const CLI::CallForHelp&) {
    std::fputs(root_->help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(root_->help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    if (chosen != nullptr) chosen->check_unknown_flags();  // the first mistake, if it was one
    throw ConfigError(parse_error_message(e, path));
  }
  if (version_asked_) {
    std::printf("%s\n", version_().c_str());
    return 0;
  }
  LOOM_CHECK_T(ConfigError, chosen != nullptr, "loom", path.empty() ? "" : " " + path,
               ": expected a command, one of ",
               names_of(path.empty() ? *root_ : *child_named(*root_, path)), " (see `loom",
               path.empty() ? "" : " " + path, " --help`)");
  chosen->check_parsed();
  return chosen->run();
}

}  // namespace loom::cli

// The `loom` command line on CLI11: the root command, its verbs (launch/cli/Verb.h) and groups of
// verbs (`loom tokenizer train|encode|decode`). `--help` / `-h` on `loom` or on any verb prints its
// usage with every flag's help and exits 0; every parse mistake (unknown command or flag, a
// missing value, a repeated flag) is a ConfigError naming the verb and the flag.
//   Cli cli([] { return std::string("loom 0.1"); });
//   Verb& v = cli.verb(cli.root(), "bench", "time training steps", run_bench);
//   v.value("batch", "N", "sequences per step (default 4)");
//   return cli.run(argc, argv);   // the verb's exit code
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "launch/cli/Verb.h"

namespace loom::cli {

class Cli {
 public:
  // `version()` is what `loom --version` prints (called only then).
  explicit Cli(std::function<std::string()> version);
  ~Cli();

  CLI::App& root() { return *root_; }
  // A group of verbs under `parent`, such as `loom tokenizer`.
  CLI::App& group(CLI::App& parent, const std::string& name, const std::string& description);
  // A verb under `parent` (root() or a group); the returned Verb lives as long as this Cli.
  Verb& verb(CLI::App& parent, const std::string& name, const std::string& description,
             Verb::Body body);
  // Before parsing `verb`'s arguments, replace the word `from` by `to` (e.g. mpirun's "-np" by
  // "-n", which CLI11 would read as "-n p").
  void respell(const Verb& verb, const std::string& from, const std::string& to);

  // Parses argv and runs the chosen verb; returns its exit code. `loom` alone prints the usage and
  // returns 1; --help and --version print and return 0.
  int run(int argc, char** argv);
  std::string help() const;

 private:
  struct Respelling {
    const Verb* verb;
    std::string from, to;
  };
  // The words of argv after the verb's path has been found; throws ConfigError for an unknown
  // command. Sets `chosen` to the verb (or null when the words stop at a group or a flag) and
  // `path` to the command words seen ("tokenizer train").
  std::vector<std::string> resolve(int argc, char** argv, const Verb*& chosen,
                                   std::string& path) const;

  std::unique_ptr<CLI::App> root_;
  std::function<std::string()> version_;
  bool version_asked_ = false;
  std::vector<std::unique_ptr<Verb>> verbs_;
  std::vector<Respelling> respellings_;
};

}  // namespace loom::cli

// One `loom` verb (`loom train`, `loom tokenizer decode`, ...) on CLI11: its flags, declared with
// their help text (what `loom VERB --help` prints), and typed, range-checked access to the parsed
// values. CLI11 only splits the command line; every value is kept as text and converted here, so
// each mistake is a ConfigError (exit 2) naming the verb, the flag and the expected form:
//   loom tokenizer decode: --ids expects comma-separated integers in [0, 2147483647], got
//   "4294967297" Verb& v = cli.verb("generate", "sample from a checkpoint", run_generate);
//   v.value("max-new-tokens", "N", "tokens to generate per sample (default 64)");
//   ... later, in run_generate(const Verb& a): a.get_int("max-new-tokens", 64, 0, 1 << 20)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace loom::cli {

class Verb {
 public:
  using Body = std::function<int(const Verb&)>;

  // `app` is the CLI11 subcommand (owned by its parent); `path` names the verb in messages
  // ("tokenizer train"); `body` runs it after a successful parse.
  Verb(CLI::App& app, std::string path, Body body);
  ~Verb();
  Verb(const Verb&) = delete;
  Verb& operator=(const Verb&) = delete;

  // ---- declaring (before parsing); `name` without dashes, `type` shown in --help (N, X, FILE)
  // Positional arguments, at most `max` (the body checks how many it needs; more are an error).
  Verb& positionals(const std::string& name, const std::string& help, int max = 1);
  // --name TYPE (also --name=TYPE), at most once; `short_name` such as "-n" is an alias.
  Verb& value(const std::string& name, const std::string& type, const std::string& help,
              const std::string& short_name = "");
  // --name TYPE, repeatable (--set a=1 --set b=2).
  Verb& list(const std::string& name, const std::string& type, const std::string& help);
  // --name (also --name=true / --name=false).
  Verb& boolean(const std::string& name, const std::string& help);

  // ---- reading (after parsing)
  const std::string& path() const { return path_; }
  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback) const;
  std::string require(const std::string& name) const;  // ConfigError when not given
  bool flag(const std::string& name) const;
  const std::vector<std::string>& list(const std::string& name) const;
  // A base-10 integer in [lo, hi] (fallback when not given); anything else is a ConfigError
  // naming the flag and the range.
  int64_t get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const;
  // A finite number in [lo, hi].
  double get_double(const std::string& name, double fallback, double lo, double hi) const;
  // "464,3290" -> {464, 3290}, each in [lo, hi].
  std::vector<int64_t> get_int_list(const std::string& name, int64_t lo, int64_t hi) const;

  // ---- used by Cli
  CLI::App& app() { return *app_; }
  // ConfigError for a flag this verb does not declare (check_unknown_flags), an unexpected
  // argument, or a single-valued flag given twice.
  void check_parsed() const;
  void check_unknown_flags() const;
  int run() const { return body_(*this); }

 private:
  struct Flag;
  const Flag& find(const std::string& name) const;
  std::string flag_names() const;

  CLI::App* app_;
  std::string path_;
  Body body_;
  std::vector<std::string> positional_;
  std::vector<std::unique_ptr<Flag>> flags_;  // stable addresses: CLI11 writes into them
};

}  // namespace loom::cli

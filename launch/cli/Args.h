// A small command-line parser for the `loom` verbs: positional arguments, `--flag value`,
// `--flag=value`, boolean `--flag`, and repeatable flags (`--set a.b=v --set c=d`). Every flag a
// verb does not declare is an error naming it and listing the verb's flags (ConfigError, exit 2).
//   Args a(argc, argv, 2, {{"prompt", Kind::Value}, {"print-ids", Kind::Bool}, {"set", Kind::List}});
//   std::string p = a.get("prompt", "");
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace loom::cli {

enum class Kind { Value, Bool, List };

struct FlagSpec {
  std::string name;
  Kind kind;
  std::string help;
};

class Args {
 public:
  // Parses argv[first..argc) for the verb `verb` (used in messages).
  Args(const std::string& verb, int argc, char** argv, int first, std::vector<FlagSpec> specs);

  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback) const;
  std::string require(const std::string& name) const;  // ConfigError if missing
  int64_t get_int(const std::string& name, int64_t fallback) const;
  double get_double(const std::string& name, double fallback) const;
  bool flag(const std::string& name) const;
  const std::vector<std::string>& list(const std::string& name) const;
  // "464,3290" -> {464, 3290}; ConfigError naming the flag on anything else.
  std::vector<int64_t> get_int_list(const std::string& name) const;
  std::string usage() const;  // the flags with their help text

 private:
  std::string verb_;
  std::vector<FlagSpec> specs_;
  std::vector<std::string> positional_;
  std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace loom::cli

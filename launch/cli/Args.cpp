// Command-line parsing for the `loom` verbs (see Args.h).
#include "launch/cli/Args.h"

#include <cerrno>
#include <cstdlib>

#include "core/util/Check.h"

namespace loom::cli {

Args::Args(const std::string& verb, int argc, char** argv, int first, std::vector<FlagSpec> specs)
    : verb_(verb), specs_(std::move(specs)) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs_)
      if (s.name == name) spec = &s;
    LOOM_CHECK_T(ConfigError, spec != nullptr, "loom ", verb_, ": unknown flag --", name,
                 "\n", usage());
    if (spec->kind == Kind::Bool) {
      LOOM_CHECK_T(ConfigError, !inline_value || value == "true" || value == "false", "loom ",
                   verb_, ": --", name, " expects no value (or =true/=false), got \"", value, "\"");
      values_[name].push_back(inline_value ? value : "true");
      continue;
    }
    if (!inline_value) {
      LOOM_CHECK_T(ConfigError, i + 1 < argc, "loom ", verb_, ": --", name, " expects a value");
      value = argv[++i];
    }
    auto& v = values_[name];
    LOOM_CHECK_T(ConfigError, spec->kind == Kind::List || v.empty(), "loom ", verb_, ": --", name,
                 " given more than once");
    v.push_back(value);
  }
}

bool Args::has(const std::string& name) const { return values_.count(name) > 0; }

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::string Args::require(const std::string& name) const {
  LOOM_CHECK_T(ConfigError, has(name), "loom ", verb_, ": --", name, " is required\n", usage());
  return get(name, "");
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  if (!has(name)) return fallback;
  std::string v = get(name, "");
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  LOOM_CHECK_T(ConfigError, errno == 0 && !v.empty() && *end == '\0', "loom ", verb_, ": --", name,
               " expects an integer, got \"", v, "\"");
  return x;
}

double Args::get_double(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  std::string v = get(name, "");
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  LOOM_CHECK_T(ConfigError, errno == 0 && !v.empty() && *end == '\0', "loom ", verb_, ": --", name,
               " expects a number, got \"", v, "\"");
  return x;
}

std::vector<int64_t> Args::get_int_list(const std::string& name) const {
  std::string v = get(name, "");
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t comma = v.find(',', pos);
    std::string item = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    errno = 0;
    char* end = nullptr;
    long long x = std::strtoll(item.c_str(), &end, 10);
    LOOM_CHECK_T(ConfigError, errno == 0 && !item.empty() && *end == '\0', "loom ", verb_, ": --",
                 name, " expects comma-separated integers, got \"", v, "\" (bad item \"", item, "\")");
    out.push_back(x);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

bool Args::flag(const std::string& name) const { return has(name) && get(name, "") == "true"; }

const std::vector<std::string>& Args::list(const std::string& name) const {
  static const std::vector<std::string> kEmpty;
  auto it = values_.find(name);
  return it == values_.end() ? kEmpty : it->second;
}

std::string Args::usage() const {
  std::string u = "flags of `loom " + verb_ + "`:";
  for (const FlagSpec& s : specs_) {
    u += "\n  --" + s.name + (s.kind == Kind::Bool ? "" : " VALUE") +
         (s.kind == Kind::List ? " (repeatable)" : "") + "  " + s.help;
  }
  return u;
}

}  // namespace loom::cli

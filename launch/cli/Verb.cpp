// A `loom` verb's flags on CLI11 with typed, range-checked access (see Verb.h).
#include "launch/cli/Verb.h"

#include <charconv>
#include <cmath>
#include <system_error>

#include <CLI/CLI.hpp>

#include "core/util/Check.h"

namespace loom::cli {

enum class FlagKind { Value, List, Bool };

struct Verb::Flag {
  std::string name;
  FlagKind kind;
  std::string type;
  std::vector<std::string> values;
  bool on = false;  // Bool flags
  CLI::Option* option = nullptr;
};

Verb::Verb(CLI::App& app, std::string path, Body body)
    : app_(&app), path_(std::move(path)), body_(std::move(body)) {
  // Unknown flags are collected instead of thrown, so that check_parsed() can name them with
  // this verb's flags in Loom's words.
  app_->allow_extras();
}

Verb::~Verb() = default;

Verb& Verb::positionals(const std::string& name, const std::string& help, int max) {
  app_->add_option(name, positional_, help)->type_name("")->expected(0, max);
  return *this;
}

Verb& Verb::value(const std::string& name, const std::string& type, const std::string& help,
                  const std::string& short_name) {
  auto f = std::make_unique<Flag>(Flag{name, FlagKind::Value, type, {}, false, nullptr});
  const std::string names = (short_name.empty() ? "" : short_name + ",") + "--" + name;
  // TakeAll keeps every occurrence so that check_parsed() reports a repeated flag in our words.
  f->option = app_->add_option(names, f->values, help)
                  ->type_name(type)
                  ->expected(1)
                  ->allow_extra_args(false)
                  ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  flags_.push_back(std::move(f));
  return *this;
}

Verb& Verb::list(const std::string& name, const std::string& type, const std::string& help) {
  auto f = std::make_unique<Flag>(Flag{name, FlagKind::List, type, {}, false, nullptr});
  f->option = app_->add_option("--" + name, f->values, help + " (repeatable)")
                  ->type_name(type)
                  ->expected(1)
                  ->allow_extra_args(false)
                  ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  flags_.push_back(std::move(f));
  return *this;
}

Verb& Verb::boolean(const std::string& name, const std::string& help) {
  auto f = std::make_unique<Flag>(Flag{name, FlagKind::Bool, "", {}, false, nullptr});
  f->option = app_->add_flag("--" + name, f->on, help);
  flags_.push_back(std::move(f));
  return *this;
}

const Verb::Flag& Verb::find(const std::string& name) const {
  for (const auto& f : flags_)
    if (f->name == name) return *f;
  LOOM_INTERNAL_ASSERT(false, "loom ", path_, ": no flag --", name, " declared");
  return *flags_.front();
}

bool Verb::has(const std::string& name) const {
  const Flag& f = find(name);
  return f.kind == FlagKind::Bool ? f.option->count() > 0 : !f.values.empty();
}

std::string Verb::get(const std::string& name, const std::string& fallback) const {
  const Flag& f = find(name);
  return f.values.empty() ? fallback : f.values.back();
}

std::string Verb::require(const std::string& name) const {
  LOOM_CHECK_T(ConfigError, has(name), "loom ", path_, ": --", name, " is required (--", name, " ",
               find(name).type, "); see `loom ", path_, " --help`");
  return get(name, "");
}

bool Verb::flag(const std::string& name) const { return find(name).on; }

const std::vector<std::string>& Verb::list(const std::string& name) const {
  return find(name).values;
}

namespace {

// Parses all of `text` as a base-10 integer in [lo, hi].
bool parse_int(const std::string& text, int64_t lo, int64_t hi, int64_t& out) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && p == end && !text.empty() && out >= lo && out <= hi;
}

}  // namespace

int64_t Verb::get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
  if (!has(name)) return fallback;
  const std::string v = get(name, "");
  int64_t x = 0;
  LOOM_CHECK_T(ConfigError, parse_int(v, lo, hi, x), "loom ", path_, ": --", name,
               " expects an integer in [", lo, ", ", hi, "], got \"", v, "\"");
  return x;
}

double Verb::get_double(const std::string& name, double fallback, double lo, double hi) const {
  if (!has(name)) return fallback;
  const std::string v = get(name, "");
  double x = 0.0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, x);
  LOOM_CHECK_T(
      ConfigError,
      ec == std::errc() && p == end && !v.empty() && std::isfinite(x) && x >= lo && x <= hi,
      "loom ", path_, ": --", name, " expects a number in [", lo, ", ", hi, "], got \"", v, "\"");
  return x;
}

std::vector<int64_t> Verb::get_int_list(const std::string& name, int64_t lo, int64_t hi) const {
  const std::string v = get(name, "");
  std::vector<int64_t> out;
  size_t pos = 0;
  while (true) {
    const size_t comma = v.find(',', pos);
    const std::string item = v.substr(pos, comma == std::string::npos ? comma : comma - pos);
    int64_t x = 0;
    LOOM_CHECK_T(ConfigError, parse_int(item, lo, hi, x), "loom ", path_, ": --", name,
                 " expects comma-separated integers in [", lo, ", ", hi, "], got \"", v,
                 "\" (bad item \"", item, "\")");
    out.push_back(x);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::string Verb::flag_names() const {
  std::string s;
  for (const auto& f : flags_) s += (s.empty() ? "--" : ", --") + f->name;
  return s.empty() ? "none" : s;
}

void Verb::check_unknown_flags() const {
  for (const std::string& extra : app_->remaining()) {
    if (extra.size() >= 2 && extra[0] == '-') {
      throw ConfigError(detail::str_cat("loom ", path_, ": unknown flag ",
                                        extra.substr(0, extra.find('=')), "; expected one of ",
                                        flag_names(), " (see `loom ", path_, " --help`)"));
    }
  }
}

void Verb::check_parsed() const {
  check_unknown_flags();
  for (const std::string& extra : app_->remaining()) {
    throw ConfigError(detail::str_cat("loom ", path_, ": unexpected argument \"", extra,
                                      "\"; see `loom ", path_, " --help`"));
  }
  for (const auto& f : flags_)
    LOOM_CHECK_T(ConfigError, f->kind != FlagKind::Value || f->values.size() <= 1, "loom ", path_,
                 ": --", f->name, " given ", f->values.size(), " times; expected at most once");
}

}  // namespace loom::cli

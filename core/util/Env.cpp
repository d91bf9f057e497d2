// The only getenv() calls in Loom.
#include "core/util/Env.h"

#include <cerrno>
#include <cstdlib>

#include "core/util/Check.h"

namespace loom::env {

bool is_set(const char* name) { return std::getenv(name) != nullptr; }

std::string get_string(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

int64_t get_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v, &end, 10);
  LOOM_CHECK_T(ConfigError, errno == 0 && end && *end == '\0',
               "environment variable ", name, ": expected an integer, got \"", v, "\"");
  LOOM_CHECK_T(ConfigError, x >= lo && x <= hi, "environment variable ", name,
               ": expected an integer in [", lo, ", ", hi, "], got ", x);
  return x;
}

bool get_bool(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  std::string s(v);
  if (s == "1" || s == "true" || s == "TRUE" || s == "on") return true;
  if (s == "0" || s == "false" || s == "FALSE" || s == "off") return false;
  throw ConfigError(detail::str_cat("environment variable ", name,
                                    ": expected 0/1/true/false, got \"", s, "\""));
}

}  // namespace loom::env

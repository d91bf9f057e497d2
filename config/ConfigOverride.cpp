// `--set a.b.c=value` through protobuf reflection (see ConfigOverride.h).
#include "config/ConfigOverride.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

#include "core/util/Check.h"
#include "config/ConfigFields.h"

namespace loom::config {

namespace pb = google::protobuf;

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.emplace_back(path.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) return parts;
    start = dot + 1;
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool parse_int(const std::string& v, int64_t lo, int64_t hi, int64_t* out) {
  if (v.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || x < lo || x > hi) return false;
  *out = x;
  return true;
}

bool parse_uint(const std::string& v, uint64_t hi, uint64_t* out) {
  if (v.empty() || v[0] == '-') return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || x > hi) return false;
  *out = x;
  return true;
}

bool parse_double(const std::string& v, double* out) {
  if (v.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (errno != 0 || *end != '\0') return false;
  *out = x;
  return true;
}

// Sets one scalar field from text; returns "" on success or what was expected.
std::string set_scalar(pb::Message& msg, const pb::FieldDescriptor& f, const std::string& v) {
  const pb::Reflection& r = *msg.GetReflection();
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  switch (f.cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      if (!parse_int(v, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
                     &i))
        return "a 32-bit integer";
      r.SetInt32(&msg, &f, int32_t(i));
      return "";
    case pb::FieldDescriptor::CPPTYPE_INT64:
      if (!parse_int(v, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                     &i))
        return "an integer";
      r.SetInt64(&msg, &f, i);
      return "";
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      if (!parse_uint(v, std::numeric_limits<uint32_t>::max(), &u))
        return "a non-negative 32-bit integer";
      r.SetUInt32(&msg, &f, uint32_t(u));
      return "";
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      if (!parse_uint(v, std::numeric_limits<uint64_t>::max(), &u)) return "a non-negative integer";
      r.SetUInt64(&msg, &f, u);
      return "";
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      if (!parse_double(v, &d)) return "a number";
      r.SetFloat(&msg, &f, float(d));
      return "";
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      if (!parse_double(v, &d)) return "a number";
      r.SetDouble(&msg, &f, d);
      return "";
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      if (v != "true" && v != "false") return "true or false";
      r.SetBool(&msg, &f, v == "true");
      return "";
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      bool quoted = v.size() >= 2 && v.front() == '"' && v.back() == '"';
      r.SetString(&msg, &f, quoted ? v.substr(1, v.size() - 2) : v);
      return "";
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const pb::EnumDescriptor& e = *f.enum_type();
      for (int k = 0; k < e.value_count(); ++k) {
        const pb::EnumValueDescriptor* ev = e.value(k);
        if (ev->number() != 0 && lower(ev->name()) == lower(v)) {
          r.SetEnum(&msg, &f, ev);
          return "";
        }
      }
      return "one of " + enum_names(e);
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return "a scalar";
}

}  // namespace

void apply_override(RunConfig& cfg, std::string_view assignment) {
  std::string a(assignment);
  size_t eq = a.find('=');
  LOOM_CHECK_T(ConfigError, eq != std::string::npos && eq > 0, "--set: expected path=value ",
               "(e.g. optimizer.lr=3e-4), got \"", a, "\"");
  std::string path = a.substr(0, eq), value = a.substr(eq + 1);
  std::vector<std::string> parts = split_path(path);
  pb::Message* msg = &cfg;
  std::string where = "the top level";
  for (size_t k = 0; k < parts.size(); ++k) {
    const pb::Descriptor& desc = *msg->GetDescriptor();
    const pb::FieldDescriptor* f = desc.FindFieldByName(parts[k]);
    if (!f) {
      std::string close = closest_field(desc, parts[k]);
      throw ConfigError(detail::str_cat("--set ", a, ": no field \"", parts[k], "\" at ", where,
                                        close.empty() ? "" : " (did you mean \"" + close + "\"?)",
                                        "; valid fields: ", field_names(desc)));
    }
    bool last = k + 1 == parts.size();
    if (f->is_repeated() && last && f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
      // A list of strings: the comma-separated values replace the field's elements.
      const pb::Reflection& r = *msg->GetReflection();
      r.ClearField(msg, f);
      std::stringstream items(value);
      for (std::string item; std::getline(items, item, ',');) {
        LOOM_CHECK_T(ConfigError, !item.empty(), "--set ", a, ": ", path,
                     " expected comma-separated non-empty values, got \"", value, "\"");
        r.AddString(msg, f, item);
      }
      return;
    }
    LOOM_CHECK_T(ConfigError, !f->is_repeated(), "--set ", a, ": field ", path,
                 " is a repeated ", f->type_name(), " field; only lists of strings can be set "
                 "(comma-separated)");
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      LOOM_CHECK_T(ConfigError, !last, "--set ", a, ": ", path,
                   " is a message; expected one of its fields: ", path, ".{",
                   field_names(*f->message_type()), "}");
      msg = msg->GetReflection()->MutableMessage(msg, f);
      where = parts[k];
      continue;
    }
    LOOM_CHECK_T(ConfigError, last, "--set ", a, ": ", parts[k], " is a ", f->type_name(),
                 " field, not a message; expected a path ending at ", parts[k]);
    std::string expected = set_scalar(*msg, *f, value);
    LOOM_CHECK_T(ConfigError, expected.empty(), "--set ", a, ": ", path, " expected ", expected,
                 ", got \"", value, "\"");
  }
}

void apply_overrides(RunConfig& cfg, const std::vector<std::string>& assignments) {
  for (const std::string& a : assignments) apply_override(cfg, a);
}

}  // namespace loom::config

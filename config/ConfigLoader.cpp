// Text/JSON parsing of RunConfig with file:line:col errors, canonical printing and hashing.
#include "config/ConfigLoader.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/util/Check.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigFields.h"
#include "config/ConfigOverride.h"
#include "config/ConfigValidate.h"

namespace loom::config {

namespace pb = google::protobuf;

namespace {

// Returns the text between the first pair of double quotes after `key`, or "" if absent.
std::string quoted_after(const std::string& msg, const std::string& key) {
  size_t k = msg.find(key);
  if (k == std::string::npos) return "";
  size_t a = msg.find('"', k + key.size());
  size_t b = a == std::string::npos ? a : msg.find('"', a + 1);
  return b == std::string::npos ? "" : msg.substr(a + 1, b - a - 1);
}

// The first enum-typed field called `name` anywhere under `desc` (for "allowed values" hints).
const pb::EnumDescriptor* find_enum_field(const pb::Descriptor& desc, const std::string& name,
                                          int depth = 0) {
  if (depth > 4) return nullptr;
  for (int i = 0; i < desc.field_count(); ++i) {
    const pb::FieldDescriptor* f = desc.field(i);
    if (f->name() == name && f->enum_type()) return f->enum_type();
    if (f->message_type()) {
      if (auto* e = find_enum_field(*f->message_type(), name, depth + 1)) return e;
    }
  }
  return nullptr;
}

// Adds a hint to protobuf's message for the two mistakes people make most: a misspelt field name
// and an enum value that does not exist.
std::string with_hint(const std::string& msg) {
  std::string type = quoted_after(msg, "Message type");
  std::string field = quoted_after(msg, "has no field named");
  if (!type.empty() && !field.empty()) {
    const pb::Descriptor* d = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
    if (d) {
      std::string close = closest_field(*d, field);
      std::string hint = close.empty() ? "" : "did you mean \"" + close + "\"? ";
      return msg + " (" + hint + "valid fields: " + field_names(*d) + ")";
    }
  }
  std::string value = quoted_after(msg, "Unknown enumeration value of");
  std::string efield = quoted_after(msg, "for field");
  if (!value.empty() && !efield.empty()) {
    if (auto* e = find_enum_field(*RunConfig::descriptor(), efield)) {
      return msg + " (allowed: " + enum_names(*e) + ")";
    }
  }
  return msg;
}

class FileErrorCollector : public pb::io::ErrorCollector {
 public:
  FileErrorCollector(std::string source, std::string_view text)
      : source_(std::move(source)), text_(text) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (!errors_.empty()) errors_ += "\n";
    column = name_column(line, column, quoted_after(message, "has no field named"));
    // protobuf counts lines and columns from 0; editors count from 1.
    errors_ += detail::str_cat(source_, ":", line + 1, ":", column + 1, ": ", with_hint(message));
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    AddError(line, column, "warning: " + message);
  }
  const std::string& errors() const { return errors_; }

 private:
  // protobuf reports an unknown field at the token after its name; point at the name itself (its
  // last occurrence on that line before the reported column).
  pb::io::ColumnNumber name_column(int line, pb::io::ColumnNumber column,
                                   const std::string& name) const {
    if (name.empty() || line < 0) return column;
    size_t start = 0;
    for (int l = 0; l < line && start != std::string_view::npos; ++l) {
      start = text_.find('\n', start);
      if (start != std::string_view::npos) ++start;
    }
    if (start == std::string_view::npos) return column;
    std::string_view row = text_.substr(start, size_t(column));
    size_t at = row.rfind(name);
    return at == std::string_view::npos ? column : pb::io::ColumnNumber(at);
  }

  std::string source_;
  std::string_view text_;
  std::string errors_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

RunConfig parse_text(std::string_view text, const std::string& source) {
  RunConfig cfg;
  FileErrorCollector errors(source, text);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(false);
  bool ok = parser.ParseFromString(std::string(text), &cfg);
  LOOM_CHECK_T(ConfigError, ok && errors.errors().empty(),
               "config: ", errors.errors().empty() ? source + ": parse error" : errors.errors());
  return cfg;
}

RunConfig parse_json(std::string_view text, const std::string& source) {
  RunConfig cfg;
  pb::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto status = pb::util::JsonStringToMessage(std::string(text), &cfg, opts);
  LOOM_CHECK_T(ConfigError, status.ok(), "config: ", source,
               ": invalid JSON config: ", std::string(status.message()));
  return cfg;
}

std::string read_config_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  LOOM_CHECK_T(ConfigError, !std::filesystem::is_directory(path, ec), what, ": \"", path,
               "\" is a directory; expected a .pbtxt or .json file");
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK_T(ConfigError, in.good(), what, ": cannot open config file \"", path,
               "\"; expected a readable .pbtxt or .json file");
  std::ostringstream buf;
  buf << in.rdbuf();
  LOOM_CHECK_T(ConfigError, !in.bad(), what, ": read error in \"", path, "\"");
  return buf.str();
}

RunConfig load_file(const std::string& path) {
  std::string text = read_config_file(path);
  return ends_with(path, ".json") ? parse_json(text, path) : parse_text(text, path);
}

std::string to_text(const RunConfig& cfg) {
  std::string out;
  pb::TextFormat::Printer printer;
  LOOM_INTERNAL_ASSERT(printer.PrintToString(cfg, &out), "printing RunConfig failed");
  return out;
}

std::string config_hash(const RunConfig& cfg) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 offset basis
  for (unsigned char c : to_text(cfg)) {
    h ^= c;
    h *= 1099511628211ull;  // FNV-1a 64 prime
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

RunConfig resolve(const std::string& path, const std::vector<std::string>& overrides,
                  int world_size) {
  return resolve(path, overrides, world_size, nullptr);
}

RunConfig resolve(const std::string& path, const std::vector<std::string>& overrides,
                  int world_size, const std::function<void(RunConfig&)>& before_defaults) {
  RunConfig cfg = load_file(path);
  apply_overrides(cfg, overrides);
  if (before_defaults) before_defaults(cfg);
  apply_defaults(cfg, world_size);
  validate(cfg, world_size);
  return cfg;
}

}  // namespace loom::config

// JSONL reading with file:line errors (see JsonlReader.h).
#include "rlhf/JsonlReader.h"

#include <filesystem>
#include <fstream>

#include "core/util/Check.h"

namespace loom::rlhf::detail {

std::string get_string(const nlohmann::json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end()) throw LineError{"expected a field \"" + key + "\", got none", "missing_field"};
  if (!it->is_string()) {
    throw LineError{
        "expected field \"" + key + "\" to be a string, got " + std::string(it->type_name()),
        "bad_type"};
  }
  return it->get<std::string>();
}

namespace {

bool is_blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\n") == std::string::npos;
}

}  // namespace

int64_t read_jsonl(const std::string& component, const std::string& path, bool skip_bad,
                   const std::function<void(const nlohmann::json&)>& fn,
                   const std::function<void(const std::string& reason)>& on_skip) {
  std::ifstream f(path, std::ios::binary);
  // A path that names nothing is a config or command-line mistake (exit code 2, README).
  LOOM_CHECK_T(ConfigError, f.good() || std::filesystem::exists(path), component, ": '", path,
               "' does not exist");
  LOOM_CHECK_T(DataError, f.good(), component, ": cannot open '", path, "'");
  std::string line;
  int64_t line_no = 0, skipped = 0;
  while (std::getline(f, line)) {
    ++line_no;
    if (is_blank(line)) continue;
    try {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {  // NB: also out_of_range.406 (a huge number)
        throw LineError{std::string("expected a JSON object, got invalid JSON (") + e.what() + ")",
                        "not_json"};
      }
      if (!j.is_object()) {
        throw LineError{"expected a JSON object, got " + std::string(j.type_name()), "not_object"};
      }
      fn(j);
    } catch (const LineError& e) {
      if (!skip_bad) {
        throw DataError(component + ": " + path + ":" + std::to_string(line_no) + ": " + e.what);
      }
      ++skipped;
      on_skip(e.reason);
    }
  }
  LOOM_CHECK_T(DataError, !f.bad(), component, ": read error in '", path, "'");
  return skipped;
}

}  // namespace loom::rlhf::detail

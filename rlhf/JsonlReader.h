// Line-by-line JSONL reading shared by the SFT and preference datasets. Each non-blank line is
// handed to a callback as a parsed JSON object; a problem with a line (not JSON, not an object,
// a missing or mistyped field, an empty text, an over-long example) is raised as a LineError by
// the callback and turned here into a DataError "<component>: <file>:<line>: <what>" or, when
// `skip_bad` is set, counted and skipped. Internal to loom_rlhf (nlohmann/json is private).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace loom::rlhf::detail {

// What a line callback throws for a bad line; `reason` is a short key for the skip counters.
struct LineError {
  std::string what;
  std::string reason;
};

// The string field `key` of object `j`; LineError if it is missing or not a string.
std::string get_string(const nlohmann::json& j, const std::string& key);

// Calls fn(json) for every non-blank line of `path`. Returns the number of lines skipped as bad
// (only when skip_bad; otherwise the first bad line throws DataError naming file and line). The
// callback reports bad lines by throwing LineError and may increment counters of its own.
int64_t read_jsonl(const std::string& component, const std::string& path, bool skip_bad,
                   const std::function<void(const nlohmann::json&)>& fn,
                   const std::function<void(const std::string& reason)>& on_skip);

}  // namespace loom::rlhf::detail

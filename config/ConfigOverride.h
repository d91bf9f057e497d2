// Command-line overrides `--set a.b.c=value` applied to a RunConfig through protobuf reflection:
// integers, floats, bools (true/false), strings and enums (by name, any case). Errors are
// ConfigError naming the path; a bad path lists the valid field names at the failing level, a bad
// value says the expected type or the allowed enum values.
//
//   apply_override(cfg, "optimizer.lr=3e-4");
//   apply_override(cfg, "schedule.decay=linear");
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/Config.pb.h"

namespace loom::config {

void apply_override(RunConfig& cfg, std::string_view assignment);
void apply_overrides(RunConfig& cfg, const std::vector<std::string>& assignments);

}  // namespace loom::config

// Loading a run configuration: text format (.pbtxt) or JSON (.json) into a RunConfig, with errors
// as ConfigError "<file>:<line>:<col>: <message>" (unknown fields suggest the closest valid name),
// plus the canonical text form of a config (saved into checkpoints) and its stable hash (ranks
// compare hashes to detect being started with different configs).
//
//   RunConfig cfg = loom::config::resolve("configs/tiny.pbtxt", {"optimizer.lr=3e-4"}, world);
//   std::string text = loom::config::to_text(cfg);   // the resolved config, every field explicit
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/Config.pb.h"

namespace loom::config {

// Parse text format. `source` names the input in error messages (a file name or "<string>").
RunConfig parse_text(std::string_view text, const std::string& source = "<string>");
// Parse proto3 JSON (field names as in the .proto or lowerCamelCase; unknown fields are errors).
RunConfig parse_json(std::string_view text, const std::string& source = "<string>");
// Read a file: ".json" -> parse_json, anything else -> parse_text. A missing, unreadable or
// directory path -> ConfigError naming it.
RunConfig load_file(const std::string& path);
// The text of a config (or pipeline) file; ConfigError "<what>: ..." naming `path` when it does
// not exist, is a directory (an ifstream reads one as empty text) or cannot be read.
std::string read_config_file(const std::string& path, const std::string& what = "config");

// The config as text format, fields in declaration order (deterministic).
std::string to_text(const RunConfig& cfg);
// 16 hex digits: FNV-1a 64 of to_text(cfg). Equal configs give equal hashes on every rank/build.
std::string config_hash(const RunConfig& cfg);

// The whole pipeline: load_file, apply the "a.b=v" overrides in order, apply_defaults, validate.
RunConfig resolve(const std::string& path, const std::vector<std::string>& overrides,
                  int world_size);
// The same with `before_defaults` run on the config after the overrides and before the defaults
// (io::model_from_init fills the model section from an init_from source's own config there).
RunConfig resolve(const std::string& path, const std::vector<std::string>& overrides,
                  int world_size, const std::function<void(RunConfig&)>& before_defaults);

}  // namespace loom::config

// Cross-field validation of a RunConfig, run before any communicator or device allocation. It
// collects EVERY problem and throws one ConfigError listing each offending field with its value and
// what was expected, e.g.
//   config: 2 problems (world size 8):
//     - model.n_head=12: expected a multiple of parallel.tp=5
//     - optimizer.lr=-0.001: expected > 0
// validate() applies apply_defaults() to a copy first, so it accepts raw or resolved configs.
#pragma once

#include <string>
#include <vector>

#include "config/Config.pb.h"

namespace loom::config {

// Every problem found, one line each ("field=value: expected ..."); empty when the config is valid.
std::vector<std::string> find_problems(const RunConfig& cfg, int world_size);

// Throws ConfigError listing every problem from find_problems().
void validate(const RunConfig& cfg, int world_size);

// The upper bound of an integer field ("model.n_embd": 131072, ...; documented in Config.proto),
// also applied to what another source (a Hugging Face config.json) says of the same field.
int64_t size_bound(const std::string& field);

}  // namespace loom::config

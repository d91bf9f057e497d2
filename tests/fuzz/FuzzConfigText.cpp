// Fuzz harness: the run-config parsers (text format and proto3 JSON) followed by defaults and
// validation for two world sizes. Only ConfigError may reject an input. An input starting with '{'
// is JSON, any other is text format.
#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "config/ConfigValidate.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool json = !text.empty() && text[0] == '{';
  fuzz::accept<ConfigError>([&] {
    config::RunConfig cfg =
        json ? config::parse_json(text, "fuzz.json") : config::parse_text(text, "fuzz.pbtxt");
    for (int world : {1, 8}) {
      if (!config::find_problems(cfg, world).empty()) continue;
      config::RunConfig resolved = cfg;
      config::apply_defaults(resolved, world);
      config::validate(resolved, world);
      (void)config::grad_accum_steps(resolved);
      (void)config::padded_vocab_size(resolved);
      (void)config::config_hash(resolved);
      // The canonical text of a valid config parses back to the same config.
      if (config::to_text(config::parse_text(config::to_text(resolved))) !=
          config::to_text(resolved))
        throw InternalError("fuzz: to_text does not round-trip");
    }
  });
  return 0;
}

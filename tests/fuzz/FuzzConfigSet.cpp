// Fuzz harness: `--set path=value` overrides (one per input line) applied to the tiny test config,
// then validation. Only ConfigError may reject an input.
#include "config/ConfigLoader.h"
#include "config/ConfigOverride.h"
#include "config/ConfigValidate.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

namespace {
constexpr const char* kTiny = R"pb(
  max_steps: 200
  model { n_layer: 4 n_head: 4 n_embd: 64 vocab_size: 256 block_size: 32 }
  data { train_path: "train.h5" seq_len: 32 }
  optimizer { lr: 1e-3 }
  batch { micro_batch_size: 8 }
)pb";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  for (size_t pos = 0; pos <= text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    sets.emplace_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  static const config::RunConfig base = config::parse_text(kTiny, "tiny");
  fuzz::accept<ConfigError>([&] {
    config::RunConfig cfg = base;
    config::apply_overrides(cfg, sets);
    config::validate(cfg, 1);
    (void)config::to_text(cfg);
  });
  return 0;
}

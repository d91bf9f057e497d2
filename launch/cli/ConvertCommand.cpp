// `loom convert`: Hugging Face GPT-2 / Llama / Qwen2 / Mistral directories <-> Loom checkpoints
// (io/HfConvert.h); DIR may also be ORG/NAME in the local Hugging Face cache (io/HfSource.h).
//   loom convert --from hf DIR --to CKPT_DIR [--vocab-pad-multiple N]
//   loom convert --from loom CKPT_DIR --to hf DIR [--max-shard-bytes B]
#include <cstdio>

#include "core/util/Check.h"
#include "io/HfConvert.h"
#include "io/HfSource.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"

namespace loom::cli {

namespace {

int run_convert(const Verb& a) {
  std::string from = a.require("from"), to = a.require("to");
  const auto& pos = a.positional();
  if (from == "hf") {
    LOOM_CHECK_T(ConfigError, pos.size() == 1,
                 "loom convert --from hf: expected one HF model "
                 "directory after --from hf, got ",
                 pos.size(), " positional arguments");
    io::HfImportOptions o;
    o.vocab_pad_multiple = a.get_int("vocab-pad-multiple", 1, 1, 1 << 20);
    std::string dir = io::convert_hf_to_loom_checkpoint(io::resolve_hf_dir(pos[0]), to, o);
    std::printf("loom convert: %s -> %s\n", pos[0].c_str(), dir.c_str());
    return 0;
  }
  if (from == "loom") {
    LOOM_CHECK_T(ConfigError, to == "hf" && pos.size() == 2,
                 "loom convert --from loom: expected "
                 "`--from loom CKPT_DIR --to hf OUT_DIR`");
    io::HfExportOptions o;
    o.max_shard_bytes = uint64_t(a.get_int("max-shard-bytes", 0, 0, INT64_MAX));
    io::convert_loom_to_hf(pos[0], pos[1], o);
    std::printf("loom convert: %s -> %s (Hugging Face)\n", pos[0].c_str(), pos[1].c_str());
    return 0;
  }
  throw ConfigError("loom convert: --from expects hf or loom, got \"" + from + "\"");
}

}  // namespace

void add_convert(Cli& cli) {
  cli.verb(cli.root(), "convert", "import/export Hugging Face GPT-2 / Llama / Qwen2 / Mistral checkpoints", run_convert)
      .positionals("DIR",
                   "--from hf: the HF model directory (or ORG/NAME in the local HF cache); --from loom: the checkpoint (a step "
                   "dir or a root) and then the HF output directory",
                   2)
      .value("from", "KIND", "hf (then the HF model directory) or loom (then the checkpoint)")
      .value("to", "WHERE", "the Loom checkpoint directory (from hf), or hf DIR (from loom)")
      .value("vocab-pad-multiple", "N", "pad the vocabulary rows to a multiple of N (hf->loom)")
      .value("max-shard-bytes", "B",
             "split model.safetensors into shards of at most B bytes "
             "(loom->hf; default 0 = one file)");
}

}  // namespace loom::cli

// `loom convert`: Hugging Face GPT-2 directories <-> Loom checkpoints (io/HfConvert.h).
//   loom convert --from hf DIR --to CKPT_DIR [--vocab-pad-multiple N]
//   loom convert --from loom CKPT_DIR --to hf DIR [--max-shard-bytes B]
#include <cstdio>

#include "core/util/Check.h"
#include "launch/cli/Args.h"
#include "launch/cli/Commands.h"
#include "io/HfConvert.h"

namespace loom::cli {

int cmd_convert(int argc, char** argv) {
  Args a("convert", argc, argv, 2,
         {{"from", Kind::Value, "hf (then the HF model directory) or loom (then the checkpoint)"},
          {"to", Kind::Value, "the Loom checkpoint directory (from hf), or hf DIR (from loom)"},
          {"vocab-pad-multiple", Kind::Value, "pad the vocabulary rows to a multiple of N (hf->loom)"},
          {"max-shard-bytes", Kind::Value, "split model.safetensors into shards (loom->hf)"}});
  std::string from = a.require("from"), to = a.require("to");
  const auto& pos = a.positional();
  if (from == "hf") {
    LOOM_CHECK_T(ConfigError, pos.size() == 1, "loom convert --from hf: expected one HF model "
                 "directory after --from hf, got ", pos.size(), " positional arguments");
    io::HfImportOptions o;
    o.vocab_pad_multiple = a.get_int("vocab-pad-multiple", 1);
    LOOM_CHECK_T(ConfigError, o.vocab_pad_multiple >= 1, "loom convert: --vocab-pad-multiple ",
                 "expects an integer >= 1, got ", o.vocab_pad_multiple);
    std::string dir = io::convert_hf_to_loom_checkpoint(pos[0], to, o);
    std::printf("loom convert: %s -> %s\n", pos[0].c_str(), dir.c_str());
    return 0;
  }
  if (from == "loom") {
    LOOM_CHECK_T(ConfigError, to == "hf" && pos.size() == 2, "loom convert --from loom: expected "
                 "`--from loom CKPT_DIR --to hf OUT_DIR`");
    io::HfExportOptions o;
    int64_t shard = a.get_int("max-shard-bytes", 0);
    LOOM_CHECK_T(ConfigError, shard >= 0, "loom convert: --max-shard-bytes expects >= 0, got ", shard);
    o.max_shard_bytes = uint64_t(shard);
    io::convert_loom_to_hf(pos[0], pos[1], o);
    std::printf("loom convert: %s -> %s (Hugging Face GPT-2)\n", pos[0].c_str(), pos[1].c_str());
    return 0;
  }
  throw ConfigError("loom convert: --from expects hf or loom, got \"" + from + "\"");
}

}  // namespace loom::cli

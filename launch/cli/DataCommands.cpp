// `loom preprocess` (text/JSONL -> HDF5 token dataset) and `loom tokenizer` (train a BPE
// vocabulary, encode, decode).
#include <cstdio>
#include <filesystem>

#include "data/BpeTrainer.h"
#include "data/Preprocess.h"
#include "data/Tokenizer.h"
#include "core/util/Check.h"
#include "launch/cli/Args.h"
#include "launch/cli/Commands.h"

namespace loom::cli {

namespace {
const std::vector<FlagSpec> kTokenizerFlags = {
    {"vocab", Kind::Value, "vocab.json (GPT-2 encoder.json) of a byte-level BPE tokenizer"},
    {"merges", Kind::Value, "merges.txt (GPT-2 vocab.bpe)"},
    {"tokenizer-json", Kind::Value, "a Hugging Face tokenizer.json (instead of --vocab/--merges)"}};

std::vector<FlagSpec> with(std::vector<FlagSpec> a, const std::vector<FlagSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
}  // namespace

static data::Tokenizer load_tokenizer(const Args& a) {
  if (a.has("tokenizer-json")) return data::Tokenizer::from_tokenizer_json(a.get("tokenizer-json", ""));
  LOOM_CHECK_T(ConfigError, a.has("vocab") && a.has("merges"),
               "expected --vocab and --merges, or --tokenizer-json\n", a.usage());
  return data::Tokenizer::from_files(a.get("vocab", ""), a.get("merges", ""));
}

int cmd_preprocess(int argc, char** argv) {
  Args a("preprocess", argc, argv, 2,
         with({{"input", Kind::List, "a text file (one document) or .jsonl (one per line)"},
               {"output", Kind::Value, "output HDF5 token file (training split)"},
               {"val-output", Kind::Value, "validation split file (default: OUTPUT with .val)"},
               {"val-fraction", Kind::Value, "fraction of documents for validation (default 0)"},
               {"seed", Kind::Value, "seed of the document split (default 1234)"},
               {"text-field", Kind::Value, "JSONL field holding the text (default text)"},
               {"no-eot", Kind::Bool, "do not append <|endoftext|> after each document"}},
              kTokenizerFlags));
  data::PreprocessOptions o;
  o.inputs = a.list("input");
  LOOM_CHECK_T(ConfigError, !o.inputs.empty(), "loom preprocess: at least one --input is required");
  o.output = a.require("output");
  o.val_output = a.get("val-output", "");
  o.val_fraction = a.get_double("val-fraction", 0.0);
  o.seed = uint64_t(a.get_int("seed", 1234));
  o.text_field = a.get("text-field", "text");
  o.append_eot = !a.flag("no-eot");
  for (const std::string& out : {o.output, o.val_output}) {
    std::filesystem::path parent = std::filesystem::path(out).parent_path();
    if (!out.empty() && !parent.empty()) std::filesystem::create_directories(parent);
  }
  data::Tokenizer tok = load_tokenizer(a);
  data::PreprocessStats s = data::preprocess(o, tok);
  std::printf("loom preprocess: %lld documents, %lld tokens -> %s\n", (long long)s.train_docs,
              (long long)s.train_tokens, s.train_path.c_str());
  if (!s.val_path.empty())
    std::printf("loom preprocess: %lld documents, %lld tokens -> %s (validation)\n",
                (long long)s.val_docs, (long long)s.val_tokens, s.val_path.c_str());
  return 0;
}

int cmd_tokenizer(int argc, char** argv) {
  std::string sub = argc > 2 ? argv[2] : "";
  if (sub == "train") {
    Args a("tokenizer train", argc, argv, 3,
           {{"input", Kind::List, "a text file of the training corpus"},
            {"vocab-size", Kind::Value, "final vocabulary size incl. 256 bytes + specials"},
            {"min-frequency", Kind::Value, "never merge pairs seen fewer times (default 2)"},
            {"output", Kind::Value, "directory for vocab.json and merges.txt"}});
    data::BpeTrainerOptions o;
    o.vocab_size = int32_t(a.get_int("vocab-size", 8192));
    o.min_frequency = a.get_int("min-frequency", 2);
    std::vector<std::string> inputs = a.list("input");
    LOOM_CHECK_T(ConfigError, !inputs.empty(), "loom tokenizer train: at least one --input is required");
    std::string out = a.require("output");
    std::filesystem::create_directories(out);
    data::BpeModel m = data::train_bpe(inputs, o);
    data::save_bpe(m, out + "/vocab.json", out + "/merges.txt");
    std::printf("loom tokenizer: %zu tokens (%zu merges) -> %s/vocab.json, %s/merges.txt\n",
                m.tokens.size(), m.merges.size(), out.c_str(), out.c_str());
    return 0;
  }
  if (sub == "encode" || sub == "decode") {
    Args a("tokenizer " + sub, argc, argv, 3,
           with({{"text", Kind::Value, "text to encode"},
                 {"ids", Kind::Value, "comma-separated ids to decode"}},
                kTokenizerFlags));
    data::Tokenizer tok = load_tokenizer(a);
    if (sub == "encode") {
      std::vector<int32_t> ids = tok.encode(a.require("text"));
      for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
      std::printf("\n");
    } else {
      a.require("ids");
      std::vector<int32_t> ids;
      for (int64_t id : a.get_int_list("ids")) ids.push_back(int32_t(id));
      std::printf("%s\n", tok.decode(ids).c_str());
    }
    return 0;
  }
  throw ConfigError("loom tokenizer: expected a subcommand train, encode or decode, got \"" + sub + "\"");
}

}  // namespace loom::cli

// `loom preprocess` (text/JSONL -> HDF5 token dataset) and `loom tokenizer` (train a BPE
// vocabulary, encode, decode).
#include <cstdio>
#include <filesystem>
#include <limits>

#include "core/util/Check.h"
#include "data/BpeTrainer.h"
#include "data/Preprocess.h"
#include "data/Tokenizer.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"

namespace loom::cli {

namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

Verb& with_tokenizer_flags(Verb& v) {
  return v.value("vocab", "FILE", "vocab.json (GPT-2 encoder.json) of a byte-level BPE tokenizer")
      .value("merges", "FILE", "merges.txt (GPT-2 vocab.bpe)")
      .value("tokenizer-json", "FILE",
             "a Hugging Face tokenizer.json (instead of --vocab/--merges)");
}

data::Tokenizer load_tokenizer(const Verb& a) {
  if (a.has("tokenizer-json"))
    return data::Tokenizer::from_tokenizer_json(a.get("tokenizer-json", ""));
  LOOM_CHECK_T(ConfigError, a.has("vocab") && a.has("merges"), "loom ", a.path(),
               ": expected --vocab and --merges, or --tokenizer-json; see `loom ", a.path(),
               " --help`");
  return data::Tokenizer::from_files(a.get("vocab", ""), a.get("merges", ""));
}

void create_parent_dir(const std::string& file) {
  const std::filesystem::path parent = std::filesystem::path(file).parent_path();
  if (!file.empty() && !parent.empty()) std::filesystem::create_directories(parent);
}

int run_preprocess(const Verb& a) {
  data::PreprocessOptions o;
  o.inputs = a.list("input");
  LOOM_CHECK_T(ConfigError, !o.inputs.empty(), "loom preprocess: at least one --input is required");
  o.output = a.require("output");
  o.val_output = a.get("val-output", "");
  o.val_fraction = a.get_double("val-fraction", 0.0, 0.0, 1.0);
  LOOM_CHECK_T(ConfigError, o.val_fraction < 1.0,
               "loom preprocess: --val-fraction expects a number in [0, 1), got 1");
  o.seed = uint64_t(a.get_int("seed", 1234, 0, kMaxInt64));
  o.text_field = a.get("text-field", "text");
  o.append_eot = !a.flag("no-eot");
  data::check_preprocess_paths(o);  // before anything is written
  data::Tokenizer tok = load_tokenizer(a);
  create_parent_dir(o.output);
  create_parent_dir(o.val_output);
  data::PreprocessStats s = data::preprocess(o, tok);
  std::printf("loom preprocess: %lld documents, %lld tokens -> %s\n", (long long)s.train_docs,
              (long long)s.train_tokens, s.train_path.c_str());
  if (!s.val_path.empty())
    std::printf("loom preprocess: %lld documents, %lld tokens -> %s (validation)\n",
                (long long)s.val_docs, (long long)s.val_tokens, s.val_path.c_str());
  return 0;
}

int run_tokenizer_train(const Verb& a) {
  data::BpeTrainerOptions o;
  o.vocab_size = int32_t(a.get_int("vocab-size", 8192, 257, kMaxInt32));
  o.min_frequency = a.get_int("min-frequency", 2, 1, kMaxInt64);
  o.text_field = a.get("text-field", o.text_field);
  std::vector<std::string> inputs = a.list("input");
  LOOM_CHECK_T(ConfigError, !inputs.empty(),
               "loom tokenizer train: at least one --input is required");
  std::string out = a.require("output");
  std::filesystem::create_directories(out);
  data::BpeModel m = data::train_bpe(inputs, o);
  data::save_bpe(m, out + "/vocab.json", out + "/merges.txt");
  std::printf("loom tokenizer: %zu tokens (%zu merges) -> %s/vocab.json, %s/merges.txt\n",
              m.tokens.size(), m.merges.size(), out.c_str(), out.c_str());
  return 0;
}

int run_tokenizer_encode(const Verb& a) {
  const std::string text = a.require("text");
  data::Tokenizer tok = load_tokenizer(a);
  std::vector<int32_t> ids = tok.encode(text);
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
  std::printf("\n");
  return 0;
}

int run_tokenizer_decode(const Verb& a) {
  a.require("ids");
  a.get_int_list("ids", 0, kMaxInt32);  // a malformed list is reported before the files are read
  data::Tokenizer tok = load_tokenizer(a);
  std::vector<int32_t> ids;
  for (int64_t id : a.get_int_list("ids", 0, int64_t(tok.vocab_size()) - 1))
    ids.push_back(int32_t(id));
  std::printf("%s\n", tok.decode(ids).c_str());
  return 0;
}

}  // namespace

void add_preprocess(Cli& cli) {
  Verb& v = cli.verb(cli.root(), "preprocess", "tokenize text/JSONL into an HDF5 token dataset",
                     run_preprocess);
  v.list("input", "FILE", "a text file (one document) or .jsonl (one per line)")
      .value("output", "FILE.h5", "output HDF5 token file (training split)")
      .value("val-output", "FILE.h5", "validation split file (default: OUTPUT with .val)")
      .value("val-fraction", "F", "fraction of documents for validation, in [0, 1) (default 0)")
      .value("seed", "N", "seed of the document split (default 1234)")
      .value("text-field", "NAME", "JSONL field holding the text (default text)")
      .boolean("no-eot", "do not append <|endoftext|> after each document");
  with_tokenizer_flags(v);
}

void add_tokenizer(Cli& cli) {
  CLI::App& g = cli.group(cli.root(), "tokenizer", "train a BPE tokenizer, encode or decode");
  cli.verb(g, "train", "learn a byte-level BPE vocabulary (GPT-2 format) from text files",
           run_tokenizer_train)
      .list("input", "FILE", "a text file (one document) or .jsonl (one per line) of the corpus")
      .value("vocab-size", "N", "final vocabulary size incl. 256 bytes + specials (default 8192)")
      .value("min-frequency", "N", "never merge pairs seen fewer times (default 2)")
      .value("text-field", "NAME", "JSONL field holding the text (default text)")
      .value("output", "DIR", "directory for vocab.json and merges.txt");
  with_tokenizer_flags(cli.verb(g, "encode", "print the token ids of a text", run_tokenizer_encode)
                           .value("text", "TEXT", "text to encode"));
  with_tokenizer_flags(cli.verb(g, "decode", "print the text of token ids", run_tokenizer_decode)
                           .value("ids", "ID,ID,...", "comma-separated ids to decode"));
}

}  // namespace loom::cli

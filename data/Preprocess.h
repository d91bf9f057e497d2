// preprocess(): text and/or JSONL files -> tokenized HDF5 token files (TokenDataset.h), with a
// deterministic validation split. This is the library behind `loom preprocess`.
//
//   PreprocessOptions o;
//   o.inputs = {"books.txt", "web.jsonl"};
//   o.output = "train.h5";                 // validation split -> "train.val.h5"
//   o.val_fraction = 0.01;
//   PreprocessStats s = preprocess(o, tokenizer);
//
// Documents: a file ending in .jsonl/.ndjson holds one JSON object per line with a string field
// `text_field`; blank lines are skipped; any other file is one document. Empty documents are
// skipped. With append_eot each document ends with the tokenizer's <|endoftext|>.
// Split: with n documents and val_fraction f > 0, k = max(1, round(f * n)) documents go to the
// validation file: those with the k smallest Philox keys random4(seed, doc_index) (ties by
// index), so the choice depends only on (seed, document order). Documents keep their input order in
// both files. Everything is tokenized in memory before writing; each output is written under a
// temporary name and both are renamed only when both are complete. An output that is an input or
// the other output (compared as canonical paths, so through symlinks and relative paths too) is a
// ConfigError before anything is written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/Tokenizer.h"

namespace loom::data {

struct PreprocessOptions {
  std::vector<std::string> inputs;
  std::string output;            // training split
  std::string val_output;        // default: `output` with ".val" inserted before ".h5"
  double val_fraction = 0.0;     // in [0, 1)
  uint64_t seed = 1234;
  bool append_eot = true;
  std::string text_field = "text";
  int compression_level = 0;     // 0 = contiguous tokens, 1..9 = deflate
};

struct PreprocessStats {
  int64_t train_docs = 0, val_docs = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  std::string train_path, val_path;  // val_path empty when val_fraction == 0
};

PreprocessStats preprocess(const PreprocessOptions& opts, const Tokenizer& tokenizer);

// The ConfigError preprocess() raises first: an output path (the training file, or the validation
// file when val_fraction > 0, default name included) that is an input or the other output.
void check_preprocess_paths(const PreprocessOptions& opts);

// The documents of one input file, in order (exposed for tests and other dataset builders).
std::vector<std::string> read_documents(const std::string& path, const std::string& text_field);

}  // namespace loom::data

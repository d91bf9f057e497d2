// Byte-level BPE trainer: learns merges from a text corpus in the GPT-2 format, so the result is
// read by Tokenizer::from_files and by Hugging Face `tokenizers` alike.
//
//   BpeModel m = train_bpe({"corpus.txt"}, {.vocab_size = 8192});
//   save_bpe(m, "vocab.json", "merges.txt");
//
// Algorithm: the corpus is split on the special tokens, pre-tokenized with the GPT-2 regex
// (PreTokenizer.h) and counted as words; the base vocabulary is the 256 bytes in GPT-2 order. Each
// step merges the adjacent pair with the highest count (summed over words weighted by frequency).
// Tie-break (deterministic): the pair whose left token's bytes are lexicographically smallest
// (unsigned byte compare), then the right token's bytes. Training stops when the vocabulary
// (base + merges + specials) reaches vocab_size or the best count is below min_frequency. Special
// tokens get the last ids (as <|endoftext|> = 50256 in GPT-2). Pair counts are updated
// incrementally: only words that contain the merged pair are revisited.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/Tokenizer.h"

namespace loom::data {

struct BpeTrainerOptions {
  int32_t vocab_size = 50257;  // including the 256 byte tokens and the special tokens
  int64_t min_frequency = 2;   // a pair seen fewer times is never merged
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
  // The string field holding a document in .jsonl / .ndjson corpus files (as `loom preprocess`).
  std::string text_field = "text";
};

struct BpeModel {
  std::vector<std::string> tokens;  // id -> byte-level string (specials verbatim, at the end)
  std::vector<std::pair<std::string, std::string>> merges;  // rank order, byte-level strings
  std::vector<std::string> special_tokens;
  Tokenizer tokenizer() const;
};

// Trains on the given files: a .jsonl / .ndjson file holds one document per line in the string
// field opts.text_field (read by data::read_documents, as `loom preprocess` does); any other file
// is one document. Pieces never span two documents.
BpeModel train_bpe(const std::vector<std::string>& corpus_files, const BpeTrainerOptions& opts);
// Same, on in-memory texts.
BpeModel train_bpe_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& opts);
// Writes vocab.json ({"token": id}, in id order) and merges.txt ("#version: 0.2" + "left right").
void save_bpe(const BpeModel& model, const std::string& vocab_json, const std::string& merges_txt);

}  // namespace loom::data

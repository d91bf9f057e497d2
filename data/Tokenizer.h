// GPT-2 byte-level BPE tokenizer. Loads OpenAI's encoder.json + vocab.bpe (= Hugging Face's
// vocab.json + merges.txt) or a Hugging Face tokenizer.json (model.type "BPE" with a ByteLevel
// pre-tokenizer), and encodes exactly as GPT-2 / HF `tokenizers` do: GPT-2 regex pre-tokenizer,
// bytes mapped to the byte-level alphabet, then BPE merges applied lowest rank first.
//
//   auto tok = Tokenizer::from_files("vocab.json", "merges.txt");
//   std::vector<int32_t> ids = tok.encode("Hello world<|endoftext|>");   // {15496, 995, 50256}
//   std::string text = tok.decode(ids);
//
// Special tokens (e.g. <|endoftext|>, id 50256 in GPT-2) are matched literally in the text and
// emitted as their id when `allow_special` is on (default); when off they are encoded as ordinary
// text. Invalid UTF-8 never throws: malformed bytes become pieces of their own (PreTokenizer.h), so
// decode(encode(s)) == s for every byte string s. decode() returns raw bytes, which may be invalid
// UTF-8 if the ids split a character. encode() may be called from several threads; the word cache
// is guarded by a mutex held for one encode() call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::data {

class PreTokenizer;

class Tokenizer {
 public:
  // vocab.json ({"token": id}) + merges.txt ("left right" per line, optional "#version" header).
  // Tokens listed in `special_tokens` that exist in the vocab are treated as special; by default
  // "<|endoftext|>". Errors (DataError) name the file and what is wrong.
  static Tokenizer from_files(const std::string& vocab_json, const std::string& merges_txt,
                              const std::vector<std::string>& special_tokens = {"<|endoftext|>"});
  // Hugging Face tokenizer.json; merges may be "a b" strings or ["a","b"] pairs. Every entry of
  // added_tokens is matched literally like a special token (as HF does).
  static Tokenizer from_tokenizer_json(const std::string& path);
  // From an in-memory vocabulary: tokens[id] in byte-level form, merges as (left, right) strings.
  static Tokenizer from_vocab(std::vector<std::string> tokens,
                              const std::vector<std::pair<std::string, std::string>>& merges,
                              const std::vector<std::string>& special_tokens,
                              const std::string& source = "memory");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text) const;
  // Appends to `out` instead of returning a new vector.
  void encode_into(std::string_view text, std::vector<int32_t>& out) const;
  std::string decode(std::span<const int32_t> ids) const;  // ValueError on an id out of range

  int32_t vocab_size() const { return int32_t(tokens_.size()); }
  int32_t num_merges() const { return int32_t(merges_.size()); }
  const std::string& id_to_token(int32_t id) const;  // byte-level form, as in vocab.json
  const std::string& token_bytes(int32_t id) const;  // the raw bytes the token stands for
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Id of <|endoftext|> if it is a special token here.
  std::optional<int32_t> eot_id() const;
  const std::vector<std::pair<std::string, int32_t>>& special_tokens() const { return specials_; }
  bool allow_special() const { return allow_special_; }
  void set_allow_special(bool allow) { allow_special_ = allow; }
  // One line naming the kind, sizes and source files (stored in dataset files).
  const std::string& description() const { return description_; }

 private:
  Tokenizer();
  struct PairTable;
  struct Cache;
  struct TokenIndex;
  void build(std::vector<std::string> tokens,
             const std::vector<std::pair<std::string, std::string>>& merges,
             const std::vector<std::string>& special_tokens, const std::string& source,
             int first_merge_line);
  void encode_ordinary(std::string_view text, std::vector<int32_t>& out, Cache& cache) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe_long(std::vector<int32_t>& syms) const;

  std::vector<std::string> tokens_;  // id -> byte-level string
  std::vector<std::string> bytes_;   // id -> raw bytes
  std::vector<std::pair<int32_t, int32_t>> merges_;  // rank -> (left id, right id)
  std::unique_ptr<PairTable> ranks_;                 // (left, right) -> (rank, merged id)
  std::unique_ptr<TokenIndex> index_;                // byte-level string -> id
  int32_t byte_id_[256] = {};
  std::vector<std::pair<std::string, int32_t>> specials_;  // raw text -> id
  bool allow_special_ = true;
  std::string description_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace loom::data

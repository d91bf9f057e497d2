// BPE tokenizer, exact to Hugging Face `tokenizers`: GPT-2 byte-level BPE from vocab.json +
// merges.txt, or a tokenizer.json pipeline: added tokens -> normalizer (NFC, Prepend, Replace) ->
// pre-tokenizer (GPT-2 regex, Split(regex) as Llama-3 / Qwen2, Metaspace) -> BPE (byte-level, or
// SentencePiece-style on characters with byte_fallback / unk, ignore_merges) -> post-processor
// (BOS template); decode with the file's decoder (ByteLevel, Replace/ByteFallback/Fuse/Strip, ...).
//   auto tok = Tokenizer::from_files("vocab.json", "merges.txt");
//   std::vector<int32_t> ids = tok.encode("Hello world<|endoftext|>");   // {15496, 995, 50256}
//   Tokenizer::from_tokenizer_json("llama3/tokenizer.json").encode("Hi", true);  // BOS + "Hi"
// Invalid UTF-8 never throws (byte-level: decode(encode(s)) == s for all bytes; see PreTokenizer.h).
// encode() may be called from several threads; the word cache is guarded by a mutex.
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

class AddedTokens;
struct AddedToken;
class Normalizer;
class PreTokenizer;
class TokenDecoder;

class Tokenizer {
 public:
  // vocab.json ({"token": id}) + merges.txt ("left right" per line, optional "#version" header).
  // Tokens listed in `special_tokens` that exist in the vocab are treated as special; by default
  // "<|endoftext|>". Errors (DataError) name the file and what is wrong.
  static Tokenizer from_files(const std::string& vocab_json, const std::string& merges_txt,
                              const std::vector<std::string>& special_tokens = {"<|endoftext|>"});
  // Hugging Face tokenizer.json (model.type "BPE"). An unsupported component is a DataError naming
  // the file, its JSON path (e.g. pre_tokenizer.pretokenizers[1].type) and the supported values.
  static Tokenizer from_tokenizer_json(const std::string& path);
  // From an in-memory vocabulary: tokens[id] in byte-level form, merges as (left, right) strings.
  static Tokenizer from_vocab(std::vector<std::string> tokens,
                              const std::vector<std::pair<std::string, std::string>>& merges,
                              const std::vector<std::string>& special_tokens,
                              const std::string& source = "memory");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special_tokens: add the post-processor's tokens (e.g. Llama-3's <|begin_of_text|>); HF's
  // Python encode() does this by default, Loom's does not.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Appends to `out` instead of returning a new vector.
  void encode_into(std::string_view text, std::vector<int32_t>& out,
                   bool add_special_tokens = false) const;
  // Encodes consecutive pieces of one text separately (no token spans two pieces; used to mark
  // prompt and response tokens). Normalisation state carries over as in the joined text: a piece
  // that continues a stretch of text gets no SentencePiece "▁" prepended; one that follows an
  // added token (or starts the text) does. No post-processor tokens are added.
  std::vector<std::vector<int32_t>> encode_pieces(const std::vector<std::string>& pieces) const;
  // ValueError on an id out of range. skip_special_tokens drops special added tokens (as HF).
  // NB: returns raw bytes; where ids split a UTF-8 character HF would put U+FFFD instead.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const { return int32_t(tokens_.size()); }
  int32_t num_merges() const { return int32_t(merges_.size()); }
  const std::string& id_to_token(int32_t id) const;  // as in the vocab (byte-level form for GPT-2)
  // The raw bytes the token stands for (SentencePiece-style vocabularies: '▁' as ' ', <0xXX> as
  // the byte; added tokens: their content).
  const std::string& token_bytes(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Id of <|endoftext|> if it is a special token here.
  std::optional<int32_t> eot_id() const;
  bool is_special(int32_t id) const;
  // Special added tokens as (content, id), longest first.
  const std::vector<std::pair<std::string, int32_t>>& special_tokens() const { return specials_; }
  // Ids the post-processor puts before / after the text when add_special_tokens is on.
  const std::vector<int32_t>& prefix_ids() const { return prefix_ids_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_ids_; }
  // Off: special added tokens in the text are encoded as ordinary text (HF's
  // encode_special_tokens); non-special added tokens still match.
  bool allow_special() const { return allow_special_; }
  void set_allow_special(bool allow) { allow_special_ = allow; }
  // One line naming the kind, sizes and source files (stored in dataset files).
  const std::string& description() const { return description_; }

 private:
  Tokenizer();
  struct PairTable;
  struct Cache;
  struct TokenIndex;
  struct HfJson;  // tokenizer.json section readers (TokenizerJson.h)
  enum class DecodeMode { Bytes, Steps, JoinWithSpace };
  struct BpeOptions {
    bool ignore_merges = false;
    bool byte_fallback = false;
    bool fuse_unk = false;
    int32_t unk_id = -1;
  };
  void build(std::vector<std::string> tokens,
             const std::vector<std::pair<std::string, std::string>>& merges,
             std::vector<AddedToken> added, const std::string& source,
             int first_merge_line);
  void build_vocab(std::vector<std::string> tokens, const std::vector<AddedToken>& added,
                   const std::string& source);
  void build_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                    const std::string& source, int first_merge_line);
  void encode_text(std::string_view text, bool text_start, bool continues,
                   std::vector<int32_t>& out, Cache& cache, bool* ends_in_text) const;
  void encode_stretch(std::string_view text, bool text_start, bool stretch_start,
                      std::vector<int32_t>& out, Cache& cache) const;
  void encode_ordinary(std::string_view text, bool text_start, bool stretch_start,
                       std::vector<int32_t>& out, Cache& cache) const;
  void encode_uncached(std::string_view piece, std::vector<int32_t>& out, Cache& cache) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const;
  void merge_symbols(std::vector<int32_t>& syms) const;
  void bpe_long(std::vector<int32_t>& syms) const;

  std::vector<std::string> tokens_;  // id -> vocab string (byte-level form for byte-level BPE)
  std::vector<std::string> bytes_;   // id -> raw bytes
  std::vector<char> special_;        // id -> special added token
  std::vector<std::pair<int32_t, int32_t>> merges_;  // rank -> (left id, right id)
  std::unique_ptr<PairTable> ranks_;                 // (left, right) -> (rank, merged id)
  std::unique_ptr<TokenIndex> index_;                // vocab string -> id; BPE input -> model id
  bool byte_level_ = true;           // BPE on bytes (GPT-2 alphabet) vs on characters
  int32_t model_size_ = -1;          // ids below it are the BPE model's vocab (-1: all)
  BpeOptions bpe_opts_;
  int32_t byte_id_[256] = {};        // byte-level: byte -> id; else <0xXX> -> id or -1
  std::vector<std::pair<std::string, int32_t>> specials_;  // raw text -> id
  std::unique_ptr<AddedTokens> added_;
  std::unique_ptr<Normalizer> normalizer_;  // null: none
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  DecodeMode decode_mode_ = DecodeMode::Bytes;
  std::unique_ptr<TokenDecoder> decoder_;
  bool allow_special_ = true;
  std::string description_;
  std::unique_ptr<PreTokenizer> pre_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace loom::data

// Tokenizer vocabulary set-up, the encode pipeline and decode (see Tokenizer.h). BPE itself lives
// in TokenizerBpe.cpp, file parsing in TokenizerLoad.cpp / TokenizerJson.cpp.
// Hot path (GPT-2): find added tokens with memchr, pre-tokenize each stretch between them with
// PCRE2, look each piece up in a word cache, and run BPE on a miss.
#include "data/Tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "core/util/Check.h"
#include "data/AddedTokens.h"
#include "data/ByteLevel.h"
#include "data/Normalizer.h"
#include "data/PreTokenizer.h"
#include "data/TokenDecoder.h"
#include "data/TokenizerInternal.h"

namespace loom::data {
namespace {

constexpr size_t kCacheLimit = size_t(1) << 20;  // entries; the cache is cleared when it fills up
// Longer pieces are not cached: without a pre-tokenizer (SentencePiece-style files) a piece is a
// whole stretch of text, which rarely repeats and would fill memory.
constexpr size_t kMaxCachedPiece = 1024;
constexpr const char* kSpace = "\u2581";        // SentencePiece's meta space '▁'

// What a SentencePiece-style vocab entry stands for: <0xXX> -> that byte, '▁' -> ' '.
std::string sentencepiece_bytes(const std::string& tok) {
  if (tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>') {
    try {
      size_t used = 0;
      int b = std::stoi(tok.substr(3, 2), &used, 16);
      if (used == 2) return std::string(1, char(b));
    } catch (const std::exception&) {
    }
  }
  std::string out;
  for (size_t pos = 0;;) {
    size_t at = tok.find(kSpace, pos);
    out.append(tok, pos, at == std::string::npos ? std::string::npos : at - pos);
    if (at == std::string::npos) return out;
    out += ' ';
    pos = at + 3;
  }
}

}  // namespace

Tokenizer::Tokenizer()
    : index_(std::make_unique<TokenIndex>()),
      added_(std::make_unique<AddedTokens>()),
      pre_(std::make_unique<PreTokenizer>()),
      cache_(std::make_unique<Cache>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_vocab(std::vector<std::string> tokens,
                                const std::vector<std::pair<std::string, std::string>>& merges,
                                const std::vector<std::string>& special_tokens,
                                const std::string& source) {
  Tokenizer t;
  std::vector<AddedToken> added;
  for (const std::string& s : special_tokens) {
    auto it = std::find(tokens.begin(), tokens.end(), s);
    if (it != tokens.end()) added.push_back(AddedToken{s, int32_t(it - tokens.begin())});
  }
  t.build(std::move(tokens), merges, std::move(added), source, 0);
  return t;
}

void Tokenizer::build(std::vector<std::string> tokens,
                      const std::vector<std::pair<std::string, std::string>>& merges,
                      std::vector<AddedToken> added, const std::string& source,
                      int first_merge_line) {
  build_vocab(std::move(tokens), added, source);
  build_merges(merges, source, first_merge_line);
  std::vector<std::string> patterns;
  for (const AddedToken& a : added)
    patterns.push_back(a.normalized && normalizer_ ? normalizer_->apply(a.content) : a.content);
  added_ = std::make_unique<AddedTokens>(std::move(added), std::move(patterns));
  description_ = "gpt2-bpe vocab_size=" + std::to_string(tokens_.size()) +
                 " merges=" + std::to_string(merges_.size()) + " source=" + source;
}

// tokens_, bytes_, special_ and the indexes. Ids below model_size_ form the BPE model's vocab.
void Tokenizer::build_vocab(std::vector<std::string> tokens, const std::vector<AddedToken>& added,
                            const std::string& source) {
  tokens_ = std::move(tokens);
  const size_t n = tokens_.size();
  bytes_.assign(n, std::string());
  special_.assign(n, 0);
  for (int32_t id = 0; id < int32_t(n); ++id) {
    const std::string& tok = tokens_[size_t(id)];
    LOOM_CHECK_T(DataError, index_->ids.emplace(tok, id).second, "tokenizer: ", source,
                 ": token '", tok, "' appears twice in the vocabulary");
  }
  std::vector<char> is_added(n, 0);
  for (const AddedToken& a : added) {
    LOOM_INTERNAL_ASSERT(a.id >= 0 && size_t(a.id) < n && tokens_[size_t(a.id)] == a.content);
    is_added[size_t(a.id)] = 1;
    // HF's ByteLevel decoder maps a token's characters back to bytes if all are in the alphabet.
    bytes_[size_t(a.id)] = byte_level_ ? token_to_bytes(a.content).value_or(a.content) : a.content;
    if (!a.special) continue;
    special_[size_t(a.id)] = 1;
    specials_.emplace_back(a.content, a.id);
  }
  // Longest first, so that when two specials start at the same place the longer one wins.
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (int32_t id = 0; id < int32_t(n); ++id) {
    if (is_added[size_t(id)]) continue;
    if (!byte_level_) {
      bytes_[size_t(id)] = sentencepiece_bytes(tokens_[size_t(id)]);
      continue;
    }
    auto raw = token_to_bytes(tokens_[size_t(id)]);
    LOOM_CHECK_T(DataError, raw.has_value() && !raw->empty(), "tokenizer: ", source, ": token '",
                 tokens_[size_t(id)], "' (id ", id,
                 ") is not in the byte-level alphabet and is not an added token");
    bytes_[size_t(id)] = std::move(*raw);
  }
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    auto it = index_->ids.find(byte_level_ ? bytes_to_token(std::string(1, char(b))) : hex);
    LOOM_CHECK_T(DataError, it != index_->ids.end() || !byte_level_, "tokenizer: ", source,
                 ": expected a token for every byte, got none for byte ", b);
    byte_id_[b] = it == index_->ids.end() ? -1 : it->second;
  }
  if (!byte_level_ || bpe_opts_.ignore_merges) {
    const int32_t model_size = model_size_ < 0 ? int32_t(n) : model_size_;
    for (int32_t id = 0; id < model_size; ++id) {
      if (!byte_level_) {
        index_->model.emplace(tokens_[size_t(id)], id);
      } else if (auto raw = token_to_bytes(tokens_[size_t(id)])) {
        index_->model.emplace(*raw, id);
      }
    }
  }
}

void Tokenizer::build_merges(const std::vector<std::pair<std::string, std::string>>& merges,
                             const std::string& source, int first_merge_line) {
  ranks_ = std::make_unique<PairTable>(merges.size());
  merges_.reserve(merges.size());
  for (size_t k = 0; k < merges.size(); ++k) {
    auto where = [&] {
      return first_merge_line > 0 ? "line " + std::to_string(k + size_t(first_merge_line))
                                  : "merges[" + std::to_string(k) + "]";
    };
    const auto& [l, r] = merges[k];
    for (const std::string* s : {&l, &r})
      LOOM_CHECK_T(DataError, index_->ids.count(*s), "tokenizer: ", source, " ", where(),
                   ": token '", *s, "' is not in the vocabulary");
    auto merged = index_->ids.find(l + r);
    LOOM_CHECK_T(DataError, merged != index_->ids.end(), "tokenizer: ", source, " ", where(),
                 ": merged token '", l + r, "' is not in the vocabulary");
    int32_t a = index_->ids.find(l)->second, b = index_->ids.find(r)->second;
    merges_.emplace_back(a, b);
    ranks_->insert(a, b, int32_t(k), merged->second);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  encode_into(text, out, add_special_tokens);
  return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out,
                            bool add_special_tokens) const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  if (add_special_tokens) out.insert(out.end(), prefix_ids_.begin(), prefix_ids_.end());
  bool ends_in_text = false;
  encode_text(text, /*text_start=*/true, /*continues=*/false, out, *cache_, &ends_in_text);
  if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
}

std::vector<std::vector<int32_t>> Tokenizer::encode_pieces(
    const std::vector<std::string>& pieces) const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  std::vector<std::vector<int32_t>> out(pieces.size());
  bool at_start = true, ends_in_text = false;
  for (size_t k = 0; k < pieces.size(); ++k) {
    encode_text(pieces[k], at_start, !at_start && ends_in_text, out[k], *cache_, &ends_in_text);
    at_start = at_start && pieces[k].empty();
  }
  return out;
}

// Splits `text` at raw added tokens; each stretch between them is normalised and encoded.
// continues: the first stretch continues text of an earlier piece (no Prepend / Metaspace '▁').
void Tokenizer::encode_text(std::string_view text, bool text_start, bool continues,
                            std::vector<int32_t>& out, Cache& cache, bool* ends_in_text) const {
  std::vector<AddedTokens::Match> matches;
  if (added_->has(false)) added_->find(text, false, allow_special_, matches);
  size_t pos = 0;
  auto stretch = [&](size_t end) {
    if (end <= pos) return;
    encode_stretch(text.substr(pos, end - pos), text_start && pos == 0, !(continues && pos == 0),
                   out, cache);
    *ends_in_text = true;
  };
  for (const AddedTokens::Match& m : matches) {
    stretch(m.start);
    out.push_back(m.id);
    *ends_in_text = false;
    pos = m.end;
  }
  stretch(text.size());
}

// One stretch between raw added tokens: normalise, split at normalized added tokens, then
// pre-tokenize and BPE each part.
void Tokenizer::encode_stretch(std::string_view text, bool text_start, bool stretch_start,
                               std::vector<int32_t>& out, Cache& cache) const {
  std::string normalized;
  if (normalizer_) {
    normalized = normalizer_->apply(text, stretch_start);
    text = normalized;
  }
  if (!added_->has(true)) {
    encode_ordinary(text, text_start, stretch_start, out, cache);
    return;
  }
  std::vector<AddedTokens::Match> matches;
  added_->find(text, true, allow_special_, matches);
  size_t pos = 0;
  auto part = [&](size_t end) {
    if (end <= pos) return;
    encode_ordinary(text.substr(pos, end - pos), text_start && pos == 0, stretch_start || pos > 0,
                    out, cache);
  };
  for (const AddedTokens::Match& m : matches) {
    part(m.start);
    out.push_back(m.id);
    pos = m.end;
  }
  part(text.size());
}

void Tokenizer::encode_ordinary(std::string_view text, bool text_start, bool stretch_start,
                                std::vector<int32_t>& out, Cache& cache) const {
  pre_->split(text, PreTokenizer::Position{text_start, stretch_start}, [&](std::string_view piece) {
    if (byte_level_ && piece.size() == 1) {
      out.push_back(byte_id_[uint8_t(piece[0])]);
      return;
    }
    auto it = cache.words.find(piece);
    if (it != cache.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    encode_uncached(piece, out, cache);
  });
}

// Kept out of the per-piece lambda above so that the cache hit path stays small and inlined.
void Tokenizer::encode_uncached(std::string_view piece, std::vector<int32_t>& out,
                                Cache& cache) const {
  size_t start = out.size();
  bpe(piece, out);
  if (piece.size() > kMaxCachedPiece) return;
  if (cache.words.size() >= kCacheLimit) cache.words.clear();
  std::vector<int32_t> ids(out.begin() + std::ptrdiff_t(start), out.end());
  cache.words.emplace(std::string(piece), std::move(ids));
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  for (int32_t id : ids)
    LOOM_CHECK(id >= 0 && id < vocab_size(), "tokenizer.decode: expected ids in [0, ",
               vocab_size(), "), got ", id);
  auto keep = [&](int32_t id) { return !skip_special_tokens || !special_[size_t(id)]; };
  if (decode_mode_ == DecodeMode::Bytes) {
    std::string out;
    out.reserve(ids.size() * 4);
    for (int32_t id : ids)
      if (keep(id)) out += bytes_[size_t(id)];
    return out;
  }
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids)
    if (keep(id)) toks.push_back(tokens_[size_t(id)]);
  if (decode_mode_ == DecodeMode::Steps) return decoder_->decode(std::move(toks));
  std::string out;  // no decoder: HF joins the tokens with spaces
  for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
  return out;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  LOOM_CHECK(id >= 0 && id < vocab_size(), "tokenizer.id_to_token: expected an id in [0, ",
             vocab_size(), "), got ", id);
  return tokens_[size_t(id)];
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  LOOM_CHECK(id >= 0 && id < vocab_size(), "tokenizer.token_bytes: expected an id in [0, ",
             vocab_size(), "), got ", id);
  return bytes_[size_t(id)];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = index_->ids.find(token);
  if (it == index_->ids.end()) return std::nullopt;
  return it->second;
}

std::optional<int32_t> Tokenizer::eot_id() const {
  for (const auto& [text, id] : specials_)
    if (text == "<|endoftext|>") return id;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[size_t(id)];
}

}  // namespace loom::data

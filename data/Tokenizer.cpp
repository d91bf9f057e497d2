// Byte-level BPE encode/decode (see Tokenizer.h). File parsing lives in TokenizerLoad.cpp.
// Hot path: pre-tokenize with PCRE2, look each piece up in a word cache, and on a miss run BPE on
// int32 symbol ids with an open-addressing (left id, right id) -> (rank, merged id) table.
#include "data/Tokenizer.h"

#include <algorithm>
#include <climits>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "core/util/Check.h"
#include "data/ByteLevel.h"
#include "data/PreTokenizer.h"

namespace loom::data {
namespace {

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, SvHash, std::equal_to<>>;

constexpr size_t kCacheLimit = size_t(1) << 20;  // entries; the cache is cleared when it fills up
constexpr size_t kLongWord = 24;  // symbols; longer pieces use the heap-based merge (O(n log n))

}  // namespace

struct Tokenizer::PairTable {
  struct Slot {
    uint64_t key = ~uint64_t(0);
    int32_t rank = 0;
    int32_t merged = 0;
  };
  std::vector<Slot> slots;
  uint64_t mask = 0;

  explicit PairTable(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap <<= 1;
    slots.resize(cap);
    mask = cap - 1;
  }
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static uint64_t hash(uint64_t k) { return (k * 0x9E3779B97F4A7C15ull) >> 17; }
  // Returns false if the pair is already present (the first, lowest-rank entry wins).
  bool insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t k = key(a, b);
    for (uint64_t i = hash(k) & mask;; i = (i + 1) & mask) {
      if (slots[i].key == k) return false;
      if (slots[i].key == ~uint64_t(0)) {
        slots[i] = Slot{k, rank, merged};
        return true;
      }
    }
  }
  const Slot* find(int32_t a, int32_t b) const {
    uint64_t k = key(a, b);
    for (uint64_t i = hash(k) & mask;; i = (i + 1) & mask) {
      if (slots[i].key == k) return &slots[i];
      if (slots[i].key == ~uint64_t(0)) return nullptr;
    }
  }
};

struct Tokenizer::Cache {
  std::mutex mu;
  StringMap<std::vector<int32_t>> words;
};

struct Tokenizer::TokenIndex {
  StringMap<int32_t> ids;
};

Tokenizer::Tokenizer()
    : index_(std::make_unique<TokenIndex>()),
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
  t.build(std::move(tokens), merges, special_tokens, source, 0);
  return t;
}

void Tokenizer::build(std::vector<std::string> tokens,
                      const std::vector<std::pair<std::string, std::string>>& merges,
                      const std::vector<std::string>& special_tokens, const std::string& source,
                      int first_merge_line) {
  tokens_ = std::move(tokens);
  bytes_.resize(tokens_.size());
  for (int32_t id = 0; id < int32_t(tokens_.size()); ++id) {
    const std::string& tok = tokens_[size_t(id)];
    LOOM_CHECK_T(DataError, index_->ids.emplace(tok, id).second, "tokenizer: ", source,
                 ": token '", tok, "' appears twice in the vocabulary");
  }
  for (const std::string& s : special_tokens) {
    auto it = index_->ids.find(s);
    if (it == index_->ids.end()) continue;
    specials_.emplace_back(s, it->second);
    bytes_[size_t(it->second)] = s;
  }
  // Longest first, so that when two specials start at the same place the longer one wins.
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (int32_t id = 0; id < int32_t(tokens_.size()); ++id) {
    if (!bytes_[size_t(id)].empty()) continue;
    auto raw = token_to_bytes(tokens_[size_t(id)]);
    LOOM_CHECK_T(DataError, raw.has_value() && !raw->empty(), "tokenizer: ", source, ": token '",
                 tokens_[size_t(id)], "' (id ", id,
                 ") is not in the byte-level alphabet and is not a special token");
    bytes_[size_t(id)] = std::move(*raw);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = index_->ids.find(bytes_to_token(std::string(1, char(b))));
    LOOM_CHECK_T(DataError, it != index_->ids.end(), "tokenizer: ", source,
                 ": expected a token for every byte, got none for byte ", b);
    byte_id_[b] = it->second;
  }
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
  description_ = "gpt2-bpe vocab_size=" + std::to_string(tokens_.size()) +
                 " merges=" + std::to_string(merges_.size()) + " source=" + source;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  encode_into(text, out);
  return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out) const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  if (!allow_special_ || specials_.empty()) {
    encode_ordinary(text, out, *cache_);
    return;
  }
  // next[k]: where special k next occurs at or after pos (npos if never); refreshed lazily.
  std::vector<size_t> next(specials_.size());
  for (size_t k = 0; k < specials_.size(); ++k) next[k] = text.find(specials_[k].first);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos, best_k = 0;
    for (size_t k = 0; k < specials_.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < pos)
        next[k] = text.find(specials_[k].first, pos);
      if (next[k] < best) { best = next[k]; best_k = k; }
    }
    if (best == std::string_view::npos) {
      encode_ordinary(text.substr(pos), out, *cache_);
      return;
    }
    encode_ordinary(text.substr(pos, best - pos), out, *cache_);
    out.push_back(specials_[best_k].second);
    pos = best + specials_[best_k].first.size();
  }
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out,
                                Cache& cache) const {
  pre_->split(text, [&](std::string_view piece) {
    if (piece.size() == 1) {
      out.push_back(byte_id_[uint8_t(piece[0])]);
      return;
    }
    auto it = cache.words.find(piece);
    if (it != cache.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    size_t start = out.size();
    bpe(piece, out);
    if (cache.words.size() >= kCacheLimit) cache.words.clear();
    std::vector<int32_t> ids(out.begin() + std::ptrdiff_t(start), out.end());
    cache.words.emplace(std::string(piece), std::move(ids));
  });
}

// GPT-2's merge loop: repeatedly take the lowest-rank adjacent pair and merge all of its
// occurrences left to right, until no adjacent pair has a rank.
void Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<int32_t> syms(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) syms[i] = byte_id_[uint8_t(piece[i])];
  if (syms.size() > kLongWord) {
    bpe_long(syms);
    out.insert(out.end(), syms.begin(), syms.end());
    return;
  }
  size_t n = syms.size();
  while (n > 1) {
    int32_t best_rank = INT32_MAX, merged = -1;
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      const PairTable::Slot* s = ranks_->find(syms[i], syms[i + 1]);
      if (s != nullptr && s->rank < best_rank) {
        best_rank = s->rank;
        merged = s->merged;
        best_i = i;
      }
    }
    if (merged < 0) break;
    int32_t a = syms[best_i], b = syms[best_i + 1];
    size_t w = best_i;
    for (size_t r = best_i; r < n;) {
      if (r + 1 < n && syms[r] == a && syms[r + 1] == b) {
        syms[w++] = merged;
        r += 2;
      } else {
        syms[w++] = syms[r++];
      }
    }
    n = w;
  }
  out.insert(out.end(), syms.begin(), syms.begin() + std::ptrdiff_t(n));
}

// Same result as the loop in bpe() for long pieces (e.g. runs of whitespace), in O(n log n): a
// doubly linked list of symbols and a min-heap of candidate pairs ordered by (rank, position).
// Stale heap entries (a side already merged away) are skipped when popped.
void Tokenizer::bpe_long(std::vector<int32_t>& syms) const {
  const int n = int(syms.size());
  std::vector<int> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank;
    int pos;
    int32_t left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto push = [&](int i) {
    if (i < 0 || next[size_t(i)] < 0) return;
    int j = next[size_t(i)];
    if (const PairTable::Slot* s = ranks_->find(syms[size_t(i)], syms[size_t(j)]))
      heap.push(Cand{s->rank, i, syms[size_t(i)], syms[size_t(j)]});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<char> dead(size_t(n), 0);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    int i = c.pos, j = next[size_t(i)];
    if (dead[size_t(i)] || j < 0 || syms[size_t(i)] != c.left || syms[size_t(j)] != c.right)
      continue;
    syms[size_t(i)] = ranks_->find(c.left, c.right)->merged;
    dead[size_t(j)] = 1;
    next[size_t(i)] = next[size_t(j)];
    if (next[size_t(i)] >= 0) prev[size_t(next[size_t(i)])] = i;
    push(prev[size_t(i)]);
    push(i);
  }
  size_t w = 0;
  for (int i = 0; i < n; ++i)
    if (!dead[size_t(i)]) syms[w++] = syms[size_t(i)];
  syms.resize(w);
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    LOOM_CHECK(id >= 0 && id < vocab_size(), "tokenizer.decode: expected ids in [0, ",
               vocab_size(), "), got ", id);
    out += bytes_[size_t(id)];
  }
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

}  // namespace loom::data

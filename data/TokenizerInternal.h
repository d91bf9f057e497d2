// Private pieces of Tokenizer shared by its .cpp files (Tokenizer.cpp, TokenizerBpe.cpp,
// TokenizerLoad.cpp, TokenizerJson.cpp): the merge table, the word cache and the string indexes.
// Not part of the public API.
#pragma once

#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/Tokenizer.h"

namespace loom::data {

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, SvHash, std::equal_to<>>;

// Open addressing (left id, right id) -> (rank, merged id).
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
  StringMap<int32_t> ids;    // vocab string -> id (every token, added ones included)
  StringMap<int32_t> model;  // BPE input (raw bytes, or characters) -> id of a model-vocab token
};

}  // namespace loom::data

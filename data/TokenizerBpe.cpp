// The BPE model of Tokenizer (see Tokenizer.h): a piece's initial symbols (bytes for byte-level
// BPE; characters with byte_fallback / unk as in HF's BPE::merge_word otherwise), then merges
// applied lowest rank first on int32 ids through the (left, right) -> (rank, merged) table.
#include <climits>
#include <queue>

#include "data/TokenizerInternal.h"
#include "data/Unicode.h"

namespace loom::data {
namespace {

constexpr size_t kLongWord = 24;  // symbols; longer pieces use the heap-based merge (O(n log n))

}  // namespace

void Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (bpe_opts_.ignore_merges) {  // HF: a piece that is a vocab entry is emitted whole
    auto it = index_->model.find(piece);
    if (it != index_->model.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> syms;
  initial_symbols(piece, syms);
  if (syms.size() > kLongWord) {
    bpe_long(syms);
  } else {
    merge_symbols(syms);
  }
  out.insert(out.end(), syms.begin(), syms.end());
}

// HF BPE::merge_word without continuing_subword_prefix / end_of_word_suffix: each character is
// its vocab id; else its <0xXX> byte tokens (byte_fallback); else the unk token, consecutive ones
// fused (fuse_unk); else dropped. NB: as in HF, a pending unk is emitted only when a known
// character follows (byte-fallback tokens do not flush it) or at the end.
void Tokenizer::initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const {
  if (byte_level_) {
    syms.resize(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) syms[i] = byte_id_[uint8_t(piece[i])];
    return;
  }
  syms.reserve(piece.size());
  bool unk_pending = false;
  for (size_t i = 0; i < piece.size();) {
    int len = 0;
    decode_utf8(piece, i, &len);
    const std::string_view ch = piece.substr(i, size_t(len));
    i += size_t(len);
    auto it = index_->model.find(ch);
    if (it != index_->model.end()) {
      if (unk_pending) syms.push_back(bpe_opts_.unk_id);
      unk_pending = false;
      syms.push_back(it->second);
      continue;
    }
    if (bpe_opts_.byte_fallback) {
      bool all = true;
      for (char b : ch) all = all && byte_id_[uint8_t(b)] >= 0;
      if (all) {
        for (char b : ch) syms.push_back(byte_id_[uint8_t(b)]);
        continue;
      }
    }
    if (bpe_opts_.unk_id < 0) continue;
    if (unk_pending && !bpe_opts_.fuse_unk) syms.push_back(bpe_opts_.unk_id);
    unk_pending = true;
  }
  if (unk_pending) syms.push_back(bpe_opts_.unk_id);
}

// GPT-2's merge loop: repeatedly take the lowest-rank adjacent pair and merge all of its
// occurrences left to right, until no adjacent pair has a rank.
void Tokenizer::merge_symbols(std::vector<int32_t>& syms) const {
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
  syms.resize(n);
}

// Same result as merge_symbols() for long pieces (e.g. runs of whitespace), in O(n log n): a
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

}  // namespace loom::data

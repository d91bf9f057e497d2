// Added-token matching (see AddedTokens.h). Candidates are found by first byte (memchr when every
// pattern starts with the same byte, e.g. '<'), then the longest pattern that matches there wins.
#include "data/AddedTokens.h"

#include <algorithm>
#include <cstring>

#include "core/util/Check.h"
#include "data/Unicode.h"

namespace loom::data {

AddedTokens::AddedTokens(std::vector<AddedToken> tokens, std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)) {
  LOOM_INTERNAL_ASSERT(tokens_.size() == patterns_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (patterns_[i].empty()) continue;
    Set& s = sets_[tokens_[i].normalized ? 1 : 0];
    s.order.push_back(i);
    const auto b = static_cast<unsigned char>(patterns_[i][0]);
    if (!s.first_byte[b]) {
      s.first_byte[b] = true;
      ++s.n_first;
      s.only_first = b;
    }
  }
  for (Set& s : sets_)
    std::stable_sort(s.order.begin(), s.order.end(),
                     [&](size_t a, size_t b) { return patterns_[a].size() > patterns_[b].size(); });
}

void AddedTokens::find(std::string_view text, bool normalized_set, bool allow_special,
                       std::vector<Match>& out) const {
  const Set& s = sets_[normalized_set ? 1 : 0];
  if (s.order.empty()) return;
  const size_t n = text.size();
  size_t p = 0, last_end = 0;
  while (p < n) {
    if (s.n_first == 1) {
      const void* q = std::memchr(text.data() + p, s.only_first, n - p);
      if (q == nullptr) return;
      p = size_t(static_cast<const char*>(q) - text.data());
    } else {
      while (p < n && !s.first_byte[static_cast<unsigned char>(text[p])]) ++p;
      if (p == n) return;
    }
    size_t hit = SIZE_MAX;
    for (size_t i : s.order) {
      const std::string& pat = patterns_[i];
      if (pat[0] == text[p] && text.compare(p, pat.size(), pat) == 0) {
        hit = i;
        break;
      }
    }
    if (hit == SIZE_MAX) {
      ++p;
      continue;
    }
    const AddedToken& tok = tokens_[hit];
    size_t start = p, end = p + patterns_[hit].size();
    p = end;  // like HF's non-overlapping scan, a dropped match still consumes its text
    if (tok.special && !allow_special) continue;
    if (start < last_end) continue;
    if (tok.single_word) {
      int len = 0;
      const bool word_before =
          start > 0 && is_word_char(decode_utf8(text, previous_utf8_start(text, start), &len));
      const bool word_after = end < n && is_word_char(decode_utf8(text, end, &len));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      while (start > last_end) {
        size_t prev = previous_utf8_start(text, start);
        int len = 0;
        if (!is_white_space(decode_utf8(text, prev, &len))) break;
        start = prev;
      }
    }
    if (tok.rstrip) {
      int len = 0;
      while (end < n && is_white_space(decode_utf8(text, end, &len))) end += size_t(len);
    }
    out.push_back(Match{start, end, tok.id});
    last_end = end;
  }
}

}  // namespace loom::data

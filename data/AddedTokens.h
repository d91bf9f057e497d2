// Added tokens (tokenizer.json "added_tokens", GPT-2's <|endoftext|>): strings matched literally in
// the text before pre-tokenization, as Hugging Face's AddedVocabulary does. Tokens with
// normalized=false are found in the raw text; those with normalized=true in each normalised
// stretch, by their normalised content. Matching is leftmost-longest, non-overlapping; a match is
// then dropped (and the scan goes on after it) if it is a special token while specials are
// disabled, or a single_word token touching a word character. lstrip / rstrip widen a match over
// the Unicode whitespace next to it, which is dropped from the text.
//   AddedTokens added({{"<|eot_id|>", 128009, /*special=*/true}});
//   added.find("hi<|eot_id|>", /*normalized_set=*/false, true, matches);   // {2, 12, 128009}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loom::data {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = true;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class AddedTokens {
 public:
  struct Match {
    size_t start, end;  // bytes of the text the token replaces (incl. stripped whitespace)
    int32_t id;
  };

  AddedTokens() = default;
  // `patterns[i]` is what tokens[i] is matched as: its content, or for normalized tokens its
  // content after the tokenizer's normalizer.
  AddedTokens(std::vector<AddedToken> tokens, std::vector<std::string> patterns);

  // Appends the matches in `text` of the raw (normalized_set = false) or normalised set.
  void find(std::string_view text, bool normalized_set, bool allow_special,
            std::vector<Match>& out) const;
  bool has(bool normalized_set) const { return !sets_[normalized_set ? 1 : 0].order.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct Set {
    std::vector<size_t> order;  // token indices, longest pattern first
    bool first_byte[256] = {};
    int n_first = 0;  // distinct first bytes
    unsigned char only_first = 0;
  };
  std::vector<AddedToken> tokens_;
  std::vector<std::string> patterns_;
  Set sets_[2];
};

}  // namespace loom::data

// The normalizer step of a Hugging Face tokenizer.json pipeline: the steps Llama-2 / Mistral /
// Qwen2 files use (NFC, Prepend, Replace of a literal string), applied in order like HF's Sequence.
// HF normalises each stretch of text between two added tokens on its own, so Prepend
// (SentencePiece's "▁" in front) applies once per stretch: Tokenizer calls apply() per stretch.
//   using K = Normalizer::Kind;
//   Normalizer n({{K::Prepend, "\u2581", ""}, {K::Replace, " ", "\u2581"}});
//   n.apply("Hi there");   // "▁Hi▁there"
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loom::data {

class Normalizer {
 public:
  enum class Kind { Nfc, Prepend, Replace };
  struct Step {
    Kind kind;
    std::string text;     // Prepend: what to prepend; Replace: the literal pattern (non-empty)
    std::string content;  // Replace: the replacement
  };

  explicit Normalizer(std::vector<Step> steps) : steps_(std::move(steps)) {}

  // Normalised form of one stretch of text. Prepend steps add their text to a non-empty result
  // (as HF); with prepend = false they are skipped, for text that continues an earlier piece of
  // the same stretch (Tokenizer::encode_pieces).
  std::string apply(std::string_view text, bool prepend = true) const;
  bool empty() const { return steps_.empty(); }

 private:
  std::vector<Step> steps_;
};

}  // namespace loom::data

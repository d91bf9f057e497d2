// The decoder step of a Hugging Face tokenizer.json pipeline: turns the token strings of a list of
// ids back into text with HF's decoders, chained like HF's Sequence: ByteLevel (GPT-2 alphabet ->
// bytes), Replace (a literal string), ByteFallback (<0xXX> tokens -> bytes), Fuse, Strip and
// Metaspace (SentencePiece: '▁' -> ' ', dropped at the start).
//   using K = TokenDecoder::Kind;
//   TokenDecoder d({{.kind = K::Replace, .text = "\u2581", .content = " "}, {.kind = K::Fuse}});
//   d.decode({"\u2581Hello", "\u2581world"});   // " Hello world"
// NB: HF's ByteLevel decoder replaces invalid UTF-8 in its output with U+FFFD; this one returns the
// raw bytes (so byte-level decode(encode(s)) == s for every byte string s).
#pragma once

#include <string>
#include <vector>

namespace loom::data {

class TokenDecoder {
 public:
  enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace };
  struct Step {
    Kind kind;
    std::string text;     // Replace: literal pattern; Strip: the character; Metaspace: replacement
    std::string content;  // Replace: the replacement
    int start = 0;        // Strip: characters to strip at the start / end of each token
    int stop = 0;
    bool prepend = true;  // Metaspace: prepend_scheme != never (drop the replacement in token 0)
  };

  explicit TokenDecoder(std::vector<Step> steps) : steps_(std::move(steps)) {}
  // HF decode_chain through every step, then the pieces joined.
  std::string decode(std::vector<std::string> tokens) const;

 private:
  std::vector<Step> steps_;
};

}  // namespace loom::data

// Pre-tokenizer: splits text into the pieces BPE encodes one by one. Default: GPT-2's regex (HF's
// ByteLevel use_regex=true, kGpt2Pattern). tokenizer.json pipelines add steps: Split(regex,
// Isolated) such as Llama-3's and Qwen2's, and Metaspace (SentencePiece: ' ' -> '▁', a '▁' in
// front, optional split before each '▁'). Regexes: PCRE2 with UTF + UCP and JIT.
// Invalid UTF-8: PCRE2_MATCH_INVALID_UTF never matches malformed bytes; every run of bytes between
// two matches is a piece of its own (HF's Isolated keeps non-matches too), so byte-level
// decode(encode(text)) == text for every input.
//   PreTokenizer pt;
//   pt.split("Hello world", [](std::string_view piece) { ... });   // "Hello", " world"
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace loom::data {

class PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };  // Metaspace's prepend_scheme
  struct Step {
    enum class Kind { Split, Metaspace } kind = Kind::Split;
    std::string pattern;                  // Split: PCRE2 regex (matches and gaps become pieces)
    std::string replacement = "\u2581";   // Metaspace
    Prepend prepend = Prepend::Always;    // Metaspace
    bool split = true;                    // Metaspace: split before every replacement char
  };
  // Where a stretch of text (between added tokens) sits: Metaspace prepends '▁' only at the start
  // of a stretch (Always) or of the whole text (First).
  struct Position {
    bool text_start = true;     // the stretch starts at byte 0 of the encoded text
    bool stretch_start = true;  // false: it continues an earlier piece (Tokenizer::encode_pieces)
  };

  static constexpr const char* kGpt2Pattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

  PreTokenizer();  // GPT-2
  // Steps applied in order, each to every piece of the previous one. A regex that does not compile
  // throws DataError naming the pattern and the offset; the caller adds the file context.
  explicit PreTokenizer(std::vector<Step> steps);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Calls fn(piece) for each piece in order. Without a Metaspace step the pieces concatenate to
  // `text` exactly. Safe to call from several threads at once (each call uses its own match data).
  template <class Fn>
  void split(std::string_view text, Fn&& fn) const {
    split_impl(text, Position{}, thunk<Fn>, &fn);
  }
  template <class Fn>
  void split(std::string_view text, Position where, Fn&& fn) const {
    split_impl(text, where, thunk<Fn>, &fn);
  }

 private:
  using Callback = void (*)(void*, std::string_view);
  template <class Fn>
  static void thunk(void* ctx, std::string_view piece) {
    (*static_cast<std::remove_reference_t<Fn>*>(ctx))(piece);
  }
  void split_impl(std::string_view text, Position where, Callback cb, void* ctx) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::data

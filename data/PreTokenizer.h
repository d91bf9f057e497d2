// GPT-2 pre-tokenizer: splits text into the pieces that BPE then encodes one by one, using OpenAI's
// regex  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// compiled by PCRE2 with UTF + UCP and JIT.
//
// Invalid UTF-8: matching uses PCRE2_MATCH_INVALID_UTF, so malformed bytes never match the regex.
// Every maximal run of bytes between two matches (only ever invalid UTF-8) becomes a piece of its
// own; byte-level BPE encodes any bytes, so decode(encode(text)) == text for every input.
//   PreTokenizer pt;
//   pt.split("Hello world", [](std::string_view piece) { ... });   // "Hello", " world"
#pragma once

#include <functional>
#include <memory>
#include <string_view>

namespace loom::data {

class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Calls fn(piece) for each piece in order; the pieces concatenate to `text` exactly.
  // Safe to call from several threads at once (each call uses its own match data).
  template <class Fn>
  void split(std::string_view text, Fn&& fn) const {
    split_impl(text, [](void* ctx, std::string_view piece) { (*static_cast<Fn*>(ctx))(piece); },
               &fn);
  }

 private:
  using Callback = void (*)(void*, std::string_view);
  void split_impl(std::string_view text, Callback cb, void* ctx) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::data

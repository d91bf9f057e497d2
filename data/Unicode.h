// Unicode helpers for the tokenizer pipeline and the chat-template renderer: UTF-8 decoding that
// never throws on invalid bytes, NFC normalisation and full case mapping (ICU, so the tables are
// maintained by someone else), and the character classes Hugging Face `tokenizers` and Python use
// (Rust regex \s and \w for added-token flags, Python str.isspace for Jinja's trim).
//   std::string s = nfc("e\u0301");              // "\u00e9"
//   int len = 0; int32_t cp = decode_utf8(s, 0, &len);   // 0xE9, len 2
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace loom::data {

// The code point starting at text[pos] and its length in bytes (*len >= 1). An invalid or
// truncated sequence gives -1 with *len = 1 (one byte at a time, so callers always advance).
int32_t decode_utf8(std::string_view text, size_t pos, int* len);
// Start of the code point that ends just before `pos` (pos > 0); invalid bytes count one each.
size_t previous_utf8_start(std::string_view text, size_t pos);
// True if `text` is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// NFC of every maximal valid UTF-8 run of `text`; invalid bytes are copied unchanged.
std::string nfc(std::string_view text);
// Full Unicode upper / lower case (as Python's str.upper / str.lower); invalid bytes unchanged.
std::string to_upper(std::string_view text);
std::string to_lower(std::string_view text);

// Unicode White_Space (Rust regex \s).
bool is_white_space(int32_t cp);
// Rust regex \w: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_word_char(int32_t cp);
// Python str.isspace() for one character (White_Space plus U+001C..U+001F).
bool is_python_space(int32_t cp);

}  // namespace loom::data

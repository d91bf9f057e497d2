// GPT-2's byte-level alphabet: every byte 0..255 maps to one printable Unicode character, so a
// token's bytes can be written as a plain string in vocab.json/merges.txt (' ' -> 'Ġ', '\n' -> 'Ċ').
// The base vocabulary of GPT-2 lists these 256 characters in the order of `bytes_to_unicode()` in
// OpenAI's encoder.py (printable Latin-1 first, then the rest shifted to U+0100..). Shared by the
// tokenizer loader and the BPE trainer so both read and write the same format.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace loom::data {

// Code point of the character that stands for byte b.
char32_t byte_to_unicode(uint8_t b);
// The 256 bytes in GPT-2's base-vocabulary order: id i of a fresh vocab is base_byte_order()[i].
const std::array<uint8_t, 256>& base_byte_order();
// Appends the UTF-8 encoding of code point cp.
void append_utf8(std::string& out, char32_t cp);
// Byte-level token string (UTF-8 of mapped characters) -> raw bytes; nullopt if a character is
// not in the byte-level alphabet or the string is not valid UTF-8.
std::optional<std::string> token_to_bytes(std::string_view token);
// Raw bytes -> byte-level token string.
std::string bytes_to_token(std::string_view bytes);

}  // namespace loom::data

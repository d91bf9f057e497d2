// HF decoder steps (see TokenDecoder.h); each mirrors the `decode_chain` of the HF decoder it
// names.
#include "data/TokenDecoder.h"

#include "data/ByteLevel.h"
#include "data/Unicode.h"

namespace loom::data {
namespace {

using Tokens = std::vector<std::string>;

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  for (size_t at; (at = s.find(from, pos)) != std::string::npos; pos = at + from.size()) {
    out.append(s, pos, at - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// Characters of `s` (invalid bytes count as one character each).
std::vector<std::string_view> chars_of(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    int len = 0;
    decode_utf8(s, i, &len);
    out.push_back(s.substr(i, size_t(len)));
    i += size_t(len);
  }
  return out;
}

Tokens byte_level(const Tokens& tokens) {
  std::string out;
  for (const std::string& t : tokens) {
    auto raw = token_to_bytes(t);
    out += raw ? *raw : t;  // HF: a token with a character outside the alphabet stays as is
  }
  return {out};
}

// Runs of <0xXX> tokens become their bytes; a run that is not valid UTF-8 becomes one U+FFFD per
// byte (HF's ByteFallback).
Tokens byte_fallback(const Tokens& tokens) {
  Tokens out;
  std::string bytes;
  auto flush = [&] {
    if (bytes.empty()) return;
    if (is_valid_utf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    }
    bytes.clear();
  };
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (const std::string& t : tokens) {
    const bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                         hex(t[3]) >= 0 && hex(t[4]) >= 0;
    if (is_byte) {
      bytes += char(hex(t[3]) * 16 + hex(t[4]));
      continue;
    }
    flush();
    out.push_back(t);
  }
  flush();
  return out;
}

std::string strip(const std::string& t, const std::string& c, int start, int stop) {
  std::vector<std::string_view> chars = chars_of(t);
  size_t begin = 0, end = chars.size();
  for (size_t i = 0; i < size_t(start) && i < chars.size() && chars[i] == c; ++i) begin = i + 1;
  for (size_t i = 0; i < size_t(stop) && i < chars.size(); ++i) {
    const size_t index = chars.size() - i - 1;
    if (chars[index] != c) break;
    end = index;
  }
  std::string out;
  for (size_t i = begin; i < end; ++i) out += chars[i];
  return out;
}

}  // namespace

std::string TokenDecoder::decode(std::vector<std::string> tokens) const {
  for (const Step& s : steps_) {
    switch (s.kind) {
      case Kind::ByteLevel:
        tokens = byte_level(tokens);
        break;
      case Kind::Replace:
        for (std::string& t : tokens) t = replace_all(t, s.text, s.content);
        break;
      case Kind::ByteFallback:
        tokens = byte_fallback(tokens);
        break;
      case Kind::Fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens = {all};
        break;
      }
      case Kind::Strip:
        for (std::string& t : tokens) t = strip(t, s.text, s.start, s.stop);
        break;
      case Kind::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i)
          tokens[i] = replace_all(tokens[i], s.text, i == 0 && s.prepend ? "" : " ");
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace loom::data

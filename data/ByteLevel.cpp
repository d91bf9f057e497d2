// Byte-level alphabet tables (see ByteLevel.h), built once on first use.
#include "data/ByteLevel.h"

namespace loom::data {
namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<uint8_t, 256> order{};
  std::array<int16_t, 256 + 68> from_cp{};  // code point -> byte, -1 if not in the alphabet
  Tables() {
    // Printable bytes keep their code point; the other 68 map to 256, 257, ... in byte order.
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int n = 0, k = 0;
    for (int b = 0; b < 256; ++b)
      if (printable(b)) { to_cp[b] = char32_t(b); order[k++] = uint8_t(b); }
    for (int b = 0; b < 256; ++b)
      if (!printable(b)) { to_cp[b] = char32_t(256 + n++); order[k++] = uint8_t(b); }
    from_cp.fill(-1);
    for (int b = 0; b < 256; ++b) from_cp[to_cp[b]] = int16_t(b);
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

// Decodes one UTF-8 code point at s[i]; returns false on malformed input.
bool next_code_point(std::string_view s, size_t& i, char32_t& cp) {
  auto c = uint8_t(s[i]);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + size_t(len) > s.size()) return false;
  cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) {
    auto d = uint8_t(s[i + size_t(k)]);
    if ((d & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (d & 0x3F);
  }
  i += size_t(len);
  return true;
}

}  // namespace

char32_t byte_to_unicode(uint8_t b) { return tables().to_cp[b]; }

const std::array<uint8_t, 256>& base_byte_order() { return tables().order; }

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::optional<std::string> token_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    char32_t cp = 0;
    if (!next_code_point(token, i, cp)) return std::nullopt;
    if (cp >= tables().from_cp.size() || tables().from_cp[cp] < 0) return std::nullopt;
    out += char(uint8_t(tables().from_cp[cp]));
  }
  return out;
}

std::string bytes_to_token(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, tables().to_cp[uint8_t(c)]);
  return out;
}

}  // namespace loom::data

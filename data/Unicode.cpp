// Unicode helpers (see Unicode.h). ICU does normalisation, case mapping and character properties.
#include "data/Unicode.h"

#include <unicode/bytestream.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "core/util/Check.h"

namespace loom::data {

int32_t decode_utf8(std::string_view text, size_t pos, int* len) {
  const auto b0 = uint8_t(text[pos]);
  *len = 1;
  if (b0 < 0x80) return b0;
  int n = 0;
  int32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (pos + size_t(n) > text.size()) return -1;
  for (int k = 1; k < n; ++k) {
    const auto b = uint8_t(text[pos + size_t(k)]);
    if ((b & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  *len = n;
  return cp;
}

size_t previous_utf8_start(std::string_view text, size_t pos) {
  LOOM_INTERNAL_ASSERT(pos > 0 && pos <= text.size());
  for (size_t back = 1; back <= 4 && back <= pos; ++back) {
    int len = 0;
    if (decode_utf8(text, pos - back, &len) >= 0 && size_t(len) == back) return pos - back;
  }
  return pos - 1;
}

bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    int len = 0;
    if (decode_utf8(text, i, &len) < 0) return false;
    i += size_t(len);
  }
  return true;
}

namespace {

// Applies fn(valid_run, out) to each maximal valid UTF-8 run and copies invalid bytes through.
template <class Fn>
std::string per_valid_run(std::string_view text, Fn&& fn) {
  std::string out;
  out.reserve(text.size());
  size_t run = 0, i = 0;
  while (i < text.size()) {
    int len = 0;
    if (decode_utf8(text, i, &len) >= 0) {
      i += size_t(len);
      continue;
    }
    if (i > run) fn(text.substr(run, i - run), out);
    out += text[i];
    run = ++i;
  }
  if (i > run) fn(text.substr(run, i - run), out);
  return out;
}

const icu::Normalizer2& nfc_instance() {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
  LOOM_INTERNAL_ASSERT(U_SUCCESS(status) && n != nullptr,
                       "ICU NFC normalizer unavailable: ", u_errorName(status));
  return *n;
}

std::string map_case(std::string_view text, bool upper) {
  return per_valid_run(text, [&](std::string_view run, std::string& out) {
    icu::UnicodeString s =
        icu::UnicodeString::fromUTF8(icu::StringPiece(run.data(), int32_t(run.size())));
    if (upper) {
      s.toUpper(icu::Locale::getRoot());
    } else {
      s.toLower(icu::Locale::getRoot());
    }
    s.toUTF8String(out);
  });
}

}  // namespace

std::string nfc(std::string_view text) {
  const icu::Normalizer2& n = nfc_instance();
  return per_valid_run(text, [&](std::string_view run, std::string& out) {
    UErrorCode status = U_ZERO_ERROR;
    icu::StringPiece piece(run.data(), int32_t(run.size()));
    if (n.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) {
      out += run;
      return;
    }
    status = U_ZERO_ERROR;
    icu::StringByteSink<std::string> sink(&out);
    n.normalizeUTF8(0, piece, sink, nullptr, status);
    LOOM_INTERNAL_ASSERT(U_SUCCESS(status), "ICU NFC failed: ", u_errorName(status));
  });
}

std::string to_upper(std::string_view text) { return map_case(text, true); }
std::string to_lower(std::string_view text) { return map_case(text, false); }

bool is_white_space(int32_t cp) { return cp >= 0 && u_isUWhiteSpace(UChar32(cp)); }

bool is_word_char(int32_t cp) {
  if (cp < 0) return false;
  if (cp < 0x80)
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
           cp == '_';
  const auto c = UChar32(cp);
  const int32_t mask = U_GET_GC_MASK(c);
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) ||
         (mask & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0 ||
         u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL);
}

bool is_python_space(int32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || is_white_space(cp); }

}  // namespace loom::data

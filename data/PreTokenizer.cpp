// PCRE2 wrapper for the GPT-2 pre-tokenizer regex (see PreTokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/PreTokenizer.h"

#include <pcre2.h>

#include <string>

#include "core/util/Check.h"

namespace loom::data {
namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Owns one pcre2_match_data block; freed on scope exit.
struct MatchData {
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    LOOM_INTERNAL_ASSERT(md != nullptr, "pcre2_match_data_create failed");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_match_data* md;
};

}  // namespace

struct PreTokenizer::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer() : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off,
                              nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    LOOM_INTERNAL_ASSERT(false, "pre-tokenizer regex failed to compile at ", err_off, ": ",
                         reinterpret_cast<const char*>(buf));
  }
  // JIT is an optimisation only: the interpreter gives the same matches if JIT is unavailable.
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split_impl(std::string_view text, Callback cb, void* ctx) const {
  MatchData m(impl_->code);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), pos, 0, m.md, nullptr)
                        : pcre2_match(impl_->code, subject, text.size(), pos, 0, m.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      cb(ctx, text.substr(pos));  // trailing invalid bytes
      return;
    }
    LOOM_INTERNAL_ASSERT(rc > 0, "pcre2 match failed with code ", rc);
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    size_t start = ov[0], end = ov[1];
    LOOM_INTERNAL_ASSERT(end > start, "pre-tokenizer regex matched the empty string at ", start);
    if (start > pos) cb(ctx, text.substr(pos, start - pos));  // invalid bytes before the match
    cb(ctx, text.substr(start, end - start));
    pos = end;
  }
}

}  // namespace loom::data

// PCRE2 wrapper for the rule rewards (see Regex.h). One match-data block per call, so a Regex can
// be used from several threads; the match limit bounds backtracking.
#include "rlhf/Regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/util/Check.h"

namespace loom::rlhf {

namespace {

constexpr uint32_t kMatchLimit = 10'000'000;  // PCRE2's default; made explicit (Regex.h)

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_context* ctx = nullptr;
  uint32_t groups = 0;
  ~Impl() {
    pcre2_match_context_free(ctx);
    pcre2_code_free(code);
  }
};

Regex::Regex(const std::string& pattern, const std::string& what)
    : pattern_(pattern), what_(what), impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
  LOOM_CHECK(impl_->code != nullptr, what, ": expected a valid regular expression, got '", pattern,
             "': ", pcre2_message(err), " at offset ", off);
  pcre2_pattern_info(impl_->code, PCRE2_INFO_CAPTURECOUNT, &impl_->groups);
  impl_->ctx = pcre2_match_context_create(nullptr);
  LOOM_INTERNAL_ASSERT(impl_->ctx != nullptr, "pcre2_match_context_create failed");
  pcre2_set_match_limit(impl_->ctx, kMatchLimit);
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

bool Regex::search(std::string_view subject) const { return !find_all(subject).empty(); }

std::vector<std::string> Regex::find_all(std::string_view subject) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  LOOM_INTERNAL_ASSERT(md != nullptr, "pcre2_match_data_create failed");
  std::vector<std::string> out;
  auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0;
  while (pos <= subject.size()) {
    const int rc = pcre2_match(impl_->code, s, subject.size(), pos, 0, md, impl_->ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      LOOM_CHECK(false, what_, ": matching '", pattern_, "' against a text of ", subject.size(),
                 " bytes failed: ", pcre2_message(rc), "; hint: simplify the pattern");
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t g = impl_->groups > 0 ? 1 : 0;
    if (ov[2 * g] != PCRE2_UNSET)
      out.emplace_back(subject.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
    else
      out.emplace_back();
    pos = ov[1];
    if (ov[1] == ov[0]) {  // empty match: step over one (possibly multi-byte) character
      ++pos;
      while (pos < subject.size() && (static_cast<unsigned char>(subject[pos]) & 0xC0) == 0x80)
        ++pos;
    }
  }
  pcre2_match_data_free(md);
  return out;
}

}  // namespace loom::rlhf

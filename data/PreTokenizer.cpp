// PCRE2 regex splitting and Metaspace for the pre-tokenizer (see PreTokenizer.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "data/PreTokenizer.h"

#include <pcre2.h>

#include <string>

#include "core/util/Check.h"
#include "data/Unicode.h"

namespace loom::data {
namespace {

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

struct Regex {
  pcre2_code* code = nullptr;
  bool jit = false;
  explicit Regex(const std::string& pattern) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off,
                         nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      throw DataError("pre-tokenizer: expected a regex PCRE2 can compile, got \"" + pattern +
                      "\" (error at offset " + std::to_string(err_off) + ": " +
                      reinterpret_cast<const char*>(buf) + ")");
    }
    // JIT is an optimisation only: the interpreter gives the same matches if JIT is unavailable.
    jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
};

}  // namespace

struct PreTokenizer::Impl {
  std::vector<Step> steps;
  std::vector<std::unique_ptr<Regex>> regex;  // per step; null for Metaspace

  struct Run {
    const Impl& impl;
    Position where;
    Callback cb;
    void* ctx;
    void emit(size_t step, std::string_view piece) const {
      if (step == impl.steps.size()) {
        cb(ctx, piece);
      } else if (impl.regex[step]) {
        split_regex(step, piece);
      } else {
        metaspace(step, piece);
      }
    }
    void split_regex(size_t step, std::string_view text) const;
    void metaspace(size_t step, std::string_view text) const;
  };
};

namespace {

// Isolated split: every match is a piece and so is every gap between matches.
template <class Out>
void regex_split(const Regex& re, std::string_view text, Out&& out) {
  MatchData m(re.code);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, search = 0;
  while (search < text.size()) {
    int rc = re.jit ? pcre2_jit_match(re.code, subject, text.size(), search, 0, m.md, nullptr)
                    : pcre2_match(re.code, subject, text.size(), search, 0, m.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    LOOM_INTERNAL_ASSERT(rc > 0, "pcre2 match failed with code ", rc);
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    size_t start = ov[0], end = ov[1];
    if (end == start) {  // an empty match makes no piece (HF drops empty splits)
      int len = 0;
      decode_utf8(text, start, &len);
      search = start + size_t(len);
      continue;
    }
    if (start > pos) out(text.substr(pos, start - pos));
    out(text.substr(start, end - start));
    pos = search = end;
  }
  if (pos < text.size()) out(text.substr(pos));
}

}  // namespace

void PreTokenizer::Impl::Run::split_regex(size_t step, std::string_view text) const {
  const Regex& re = *impl.regex[step];
  if (step + 1 == impl.steps.size()) {  // the common case: pieces go straight to the caller
    regex_split(re, text, [&](std::string_view piece) { cb(ctx, piece); });
  } else {
    regex_split(re, text, [&](std::string_view piece) { emit(step + 1, piece); });
  }
}

// HF Metaspace: ' ' -> replacement, prepend the replacement per the scheme (unless the text
// already starts with it), then optionally split before every replacement (MergedWithNext).
void PreTokenizer::Impl::Run::metaspace(size_t step, std::string_view text) const {
  const Step& s = impl.steps[step];
  std::string out;
  out.reserve(text.size() + s.replacement.size());
  const bool prepend =
      where.stretch_start &&
      (s.prepend == Prepend::Always || (s.prepend == Prepend::First && where.text_start));
  for (char c : text) {
    if (c == ' ') {
      out += s.replacement;
    } else {
      out += c;
    }
  }
  if (prepend && !out.empty() && out.compare(0, s.replacement.size(), s.replacement) != 0)
    out.insert(0, s.replacement);
  std::string_view v(out);
  if (!s.split) {
    if (!v.empty()) emit(step + 1, v);
    return;
  }
  size_t piece = 0;
  for (size_t at = v.find(s.replacement); at != std::string_view::npos;
       at = v.find(s.replacement, at + s.replacement.size())) {
    if (at == 0) continue;
    emit(step + 1, v.substr(piece, at - piece));
    piece = at;
  }
  if (piece < v.size()) emit(step + 1, v.substr(piece));
}

PreTokenizer::PreTokenizer() : PreTokenizer(std::vector<Step>{Step{.pattern = kGpt2Pattern}}) {}

PreTokenizer::PreTokenizer(std::vector<Step> steps) : impl_(std::make_unique<Impl>()) {
  for (const Step& s : steps)
    impl_->regex.push_back(s.kind == Step::Kind::Split ? std::make_unique<Regex>(s.pattern)
                                                       : nullptr);
  impl_->steps = std::move(steps);
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split_impl(std::string_view text, Position where, Callback cb,
                              void* ctx) const {
  Impl::Run{*impl_, where, cb, ctx}.emit(0, text);
}

}  // namespace loom::data

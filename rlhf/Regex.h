// A compiled PCRE2 regular expression for the rule rewards (RewardSources.h): search and
// find-all over response texts. UTF-8 mode that tolerates invalid UTF-8 in the subject (sampled
// responses can end mid-character; invalid bytes never match), and a match limit so a
// pathological pattern fails with an error instead of hanging a training step.
//   Regex r("answer:\\s*(\\S+)", "exact_match.extract_regex");
//   std::vector<std::string> all = r.find_all(text);  // group 1 of each match
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace loom::rlhf {

class Regex {
 public:
  // ValueError naming `what` (the option) with PCRE2's message and offset for a bad pattern.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  bool search(std::string_view subject) const;
  // Every non-overlapping match, left to right: capture group 1 when the pattern has one (empty
  // if that group did not take part), else the whole match.
  std::vector<std::string> find_all(std::string_view subject) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::string what_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::rlhf

// Programmable rewards for RL on prompts: a RewardSource scores a batch of (prompt, response,
// the prompt record's other fields) with one value per sample. Rule sources (exact answer match,
// regex match, numeric tolerance, length and format penalties) take config-like options;
// CommandReward.h runs an external checker; the reward-model source passes on the score a reward
// model gave the sample; WeightedReward sums named sources with weights.
//
//   WeightedReward r;
//   r.add("correct", 1.0, make_reward_source(ExactMatchOptions{.extract = {Extract::BOXED}}));
//   r.add("format", 0.5, make_reward_source(FormatPenaltyOptions{.pattern = "^<think>"}));
//   WeightedScores s = r.score(samples);  // s.total[i]; s.values[k][i] per source k, for logging
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "rlhf/Regex.h"

namespace loom::rlhf {

// One sample to score.
struct RewardSample {
  std::string prompt{};
  std::string response{};
  // The prompt JSONL record's other fields, each as its JSON text, e.g. {"answer": "\"42\"",
  // "id": "7"} (kept as text so the JSON library stays private to loom_rlhf).
  std::map<std::string, std::string> fields{};
  int64_t response_tokens = -1;  // token count when known (-1: unknown)
  double model_score = std::numeric_limits<double>::quiet_NaN();  // a reward model's score (NaN:
                                                                  // none was computed)
};

// Splits one prompt JSONL record (a JSON object) into `prompt_key`'s string and the other fields.
// DataError if the text is not a JSON object or has no string `prompt_key`.
RewardSample reward_sample_from_record(const std::string& record_json,
                                       const std::string& prompt_key = "prompt");
// Field `key` of s as text: a JSON string without quotes/escapes, any other JSON value as its
// JSON text. DataError naming `component` and the key when the field is missing.
std::string field_text(const RewardSample& s, const std::string& key, const std::string& component);

class RewardSource {
 public:
  virtual ~RewardSource() = default;
  // One finite value per sample, in order. Errors (a missing field, a failing checker) throw
  // loom::DataError naming the source and the sample.
  virtual std::vector<double> score(const std::vector<RewardSample>& batch) = 0;
  // Short description for messages, e.g. "exact_match(answer)".
  virtual std::string describe() const = 0;
};

// How a rule extracts the answer from a response. The last match counts unless `take_first`.
enum class Extract {
  WHOLE,         // the whole response, whitespace-trimmed
  LAST_NUMBER,   // a number: [-+]?digits with optional 1,000 grouping, decimals, exponent
  AFTER_ANSWER,  // the rest of the line after "answer:" (case-insensitive)
  BOXED,         // the contents of \boxed{...} (no nested braces)
  REGEX,         // `regex`: capture group 1 if it has one, else the whole match
};
struct ExtractOptions {
  Extract kind = Extract::WHOLE;
  std::string regex{};  // for Extract::REGEX
  bool take_first = false;
};

// `correct` if the extracted answer equals the reference field (trimmed; a JSON array field
// accepts any of its elements), else `incorrect` (also when nothing could be extracted).
struct ExactMatchOptions {
  std::string reference_field = "answer";
  ExtractOptions extract{};
  bool case_sensitive = true;
  double correct = 1.0;
  double incorrect = 0.0;
};
// `matched` if `pattern` matches anywhere in the response (use ^...$ and (?s) to anchor).
struct RegexMatchOptions {
  std::string pattern{};
  double matched = 1.0;
  double unmatched = 0.0;
};
// `correct` if the extracted number x and the reference field's number ref satisfy
// |x - ref| <= tolerance (relative: <= tolerance * |ref|). Grouping commas are ignored.
struct NumericMatchOptions {
  std::string reference_field = "answer";
  ExtractOptions extract{.kind = Extract::LAST_NUMBER, .regex = "", .take_first = false};
  double tolerance = 0.0;
  bool relative = false;
  double correct = 1.0;
  double incorrect = 0.0;
};
// -per_unit * max(0, length - target), length in bytes or (count_tokens) response_tokens.
struct LengthPenaltyOptions {
  int64_t target = 0;
  double per_unit = 0.0;
  bool count_tokens = false;
};
// 0 when `pattern` matches the response, -penalty when it does not.
struct FormatPenaltyOptions {
  std::string pattern{};
  double penalty = 1.0;
};
// An external checker process; see CommandReward.h.
struct CommandRewardOptions {
  std::vector<std::string> argv{};  // program (PATH lookup) and arguments; no shell
  bool shell = false;               // run argv[0] as a `/bin/sh -c` command line instead
  double timeout_s = 60.0;          // per batch: from the first line sent to the last line read
  std::string stderr_path{};        // "": the checker's stderr is the trainer's; else appended here
};

// The sample's model_score (computed by the caller with a reward model); DataError when it is NaN.
struct RewardModelOptions {};

using RewardSpec = std::variant<ExactMatchOptions, RegexMatchOptions, NumericMatchOptions,
                                LengthPenaltyOptions, FormatPenaltyOptions, CommandRewardOptions,
                                RewardModelOptions>;
// ValueError for bad options (an invalid regex, a negative tolerance, an empty command, ...).
std::unique_ptr<RewardSource> make_reward_source(const RewardSpec& spec);

// Applies ExtractOptions (the pattern is compiled once; ValueError for a bad regex).
class AnswerExtractor {
 public:
  explicit AnswerExtractor(const ExtractOptions& o);
  // The extracted answer, whitespace-trimmed; false when the response has none.
  bool extract(const std::string& text, std::string* answer) const;

 private:
  ExtractOptions o_;
  std::unique_ptr<Regex> regex_;  // null for Extract::WHOLE
};

struct WeightedScores {
  std::vector<double> total;                // sum_k weight_k * values[k][i]
  std::vector<std::string> names;           // one per source, in add() order
  std::vector<double> weights;              // one per source
  std::vector<std::vector<double>> values;  // unweighted values[k][i]
  // Mean unweighted value of each source over the batch, keyed "reward/<name>".
  std::map<std::string, double> means() const;
};

// A weighted sum of named sources.
class WeightedReward {
 public:
  // ValueError for an empty or duplicate name or a non-finite weight.
  void add(const std::string& name, double weight, std::unique_ptr<RewardSource> source);
  // DataError if a source returns the wrong count or a non-finite value (names it and the index).
  WeightedScores score(const std::vector<RewardSample>& batch);
  size_t size() const { return sources_.size(); }

 private:
  struct Entry {
    std::string name;
    double weight;
    std::unique_ptr<RewardSource> source;
  };
  std::vector<Entry> sources_;
};

}  // namespace loom::rlhf

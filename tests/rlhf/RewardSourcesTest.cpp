// Rule rewards on crafted responses (answer extraction presets and custom regexes, exact and
// numeric matches against the prompt record's fields, regex, length and format penalties), the
// reward-model source, prompt-record parsing, and the weighted sum with per-source values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/util/Check.h"
#include "rlhf/RewardSources.h"

namespace loom::rlhf {
namespace {

RewardSample resp(const std::string& response, const std::string& answer_json = "\"4\"") {
  return {.prompt = "q", .response = response, .fields = {{"answer", answer_json}}};
}

std::vector<double> score(const RewardSpec& spec, const std::vector<RewardSample>& batch) {
  return make_reward_source(spec)->score(batch);
}

std::string extract(const ExtractOptions& o, const std::string& text) {
  std::string out;
  return AnswerExtractor(o).extract(text, &out) ? out : "<none>";
}

TEST(RewardSourcesTest, RecordFieldsAreKeptAsJsonText) {
  RewardSample s = reward_sample_from_record(
      R"({"prompt": "What is 2+2?", "answer": "4", "id": 7, "alts": ["4", "four"]})");
  EXPECT_EQ(s.prompt, "What is 2+2?");
  EXPECT_EQ(s.fields.size(), 3u);
  EXPECT_EQ(s.fields.at("answer"), "\"4\"");
  EXPECT_EQ(field_text(s, "answer", "test"), "4");  // a JSON string without its quotes
  EXPECT_EQ(field_text(s, "id", "test"), "7");
  EXPECT_EQ(field_text(s, "alts", "test"), R"(["4","four"])");
  EXPECT_THROW(field_text(s, "solution", "test"), DataError);
  EXPECT_THROW(reward_sample_from_record(R"({"question": "x"})"), DataError);  // no prompt
  EXPECT_THROW(reward_sample_from_record("[1, 2]"), DataError);
  EXPECT_THROW(reward_sample_from_record("{not json"), DataError);
}

TEST(RewardSourcesTest, ExtractionPresetsAndCustomRegex) {
  const std::string text = "First 3, then 12 apples; the total is 1,234.5 apples.";
  EXPECT_EQ(extract({.kind = Extract::LAST_NUMBER}, text), "1,234.5");
  EXPECT_EQ(extract({.kind = Extract::LAST_NUMBER, .take_first = true}, text), "3");
  EXPECT_EQ(extract({.kind = Extract::LAST_NUMBER}, "x = -2.5e-3."), "-2.5e-3");
  EXPECT_EQ(extract({.kind = Extract::LAST_NUMBER}, "no digits"), "<none>");
  EXPECT_EQ(extract({.kind = Extract::AFTER_ANSWER}, "Let me think.\nANSWER:  42 \nDone"), "42");
  EXPECT_EQ(extract({.kind = Extract::AFTER_ANSWER}, "answer: a\nanswer: b"), "b");
  EXPECT_EQ(extract({.kind = Extract::BOXED}, R"(so \boxed{x^2} and finally \boxed{ 17 })"), "17");
  EXPECT_EQ(extract({.kind = Extract::REGEX, .regex = R"(####\s*(\d+))"}, "work #### 72"), "72");
  EXPECT_EQ(extract({.kind = Extract::REGEX, .regex = "[a-z]+"}, "12 abc 34 de"), "de");
  EXPECT_EQ(extract({}, "  whole text \n"), "whole text");
  // Invalid UTF-8 (a sampled response cut mid-character) neither throws nor matches.
  EXPECT_EQ(extract({.kind = Extract::LAST_NUMBER}, "\xff\xfe total 12 \xe2\x82"), "12");
  try {
    AnswerExtractor bad({.kind = Extract::REGEX, .regex = "(unclosed"});
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'(unclosed'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("at offset 9"), std::string::npos) << e.what();
  }
  EXPECT_THROW(AnswerExtractor({.kind = Extract::REGEX}), ValueError);  // no regex given
}

TEST(RewardSourcesTest, ExactMatchComparesTheExtractedAnswerWithTheReference) {
  ExactMatchOptions o{.extract = {.kind = Extract::LAST_NUMBER}, .correct = 2.0, .incorrect = -1.0};
  EXPECT_EQ(score(o, {resp("so it is 4."), resp("4.0"), resp("I don't know"), resp("4", "4")}),
            (std::vector<double>{2.0, -1.0, -1.0, 2.0}));  // "4" vs "4.0": exact, not numeric
  // A JSON array accepts any element; case folding is optional.
  ExactMatchOptions alts{.extract = {.kind = Extract::AFTER_ANSWER}};
  const std::string both = R"(["4", "four"])";
  EXPECT_EQ(score(alts, {resp("Answer: four", both), resp("Answer: FOUR", both)}),
            (std::vector<double>{1.0, 0.0}));
  alts.case_sensitive = false;
  EXPECT_EQ(score(alts, {resp("Answer: FOUR", both)}), (std::vector<double>{1.0}));
  // A JSON number reference compares by its text.
  EXPECT_EQ(score(ExactMatchOptions{}, {resp(" 4 ", "4")}), (std::vector<double>{1.0}));
  // A record without the reference field names the field and the sample.
  RewardSample missing{.prompt = "q", .response = "4"};
  try {
    score(ExactMatchOptions{}, {resp("4"), missing});
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("exact_match(answer): expected field 'answer'"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("scoring sample 1"), std::string::npos) << e.what();
  }
}

TEST(RewardSourcesTest, NumericMatchWithAbsoluteAndRelativeTolerance) {
  NumericMatchOptions abs{.tolerance = 0.01};
  EXPECT_EQ(score(abs, {resp("pi is 3.14", "3.14159"), resp("3.2", "3.14159"),
                        resp("about 1,000", "1000"), resp("none", "1")}),
            (std::vector<double>{1, 0, 1, 0}));
  // Relative: |x - 1000| <= 0.01 * 1000 = 10.
  NumericMatchOptions rel{.tolerance = 0.01, .relative = true};
  EXPECT_EQ(score(rel, {resp("1,005", "1000"), resp("1011", "1000"), resp("990", "\"1,000\"")}),
            (std::vector<double>{1, 0, 1}));
  // Exactly at the bound counts: |2.5 - 2| = 0.5 (all values exact in binary).
  EXPECT_EQ(score(NumericMatchOptions{.tolerance = 0.5}, {resp("2.5", "2")}),
            (std::vector<double>{1}));
  EXPECT_THROW(score(abs, {resp("3", "\"three\"")}), DataError);  // the reference is no number
  EXPECT_THROW(make_reward_source(NumericMatchOptions{.tolerance = -1}), ValueError);
}

TEST(RewardSourcesTest, RegexFormatAndLengthRules) {
  EXPECT_EQ(score(RegexMatchOptions{.pattern = R"((?i)\bthanks\b)", .matched = 0.5},
                  {resp("Thanks!"), resp("thanksgiving")}),
            (std::vector<double>{0.5, 0.0}));
  FormatPenaltyOptions fmt{.pattern = R"((?s)^<think>.*</think>\s*\S)", .penalty = 0.5};
  EXPECT_EQ(score(fmt, {resp("<think>a\nb</think> 4"), resp("4"), resp("<think>a</think>")}),
            (std::vector<double>{0.0, -0.5, -0.5}));
  // Bytes: 14 - 10 = 4 over the target, 0.25 each.
  LengthPenaltyOptions bytes{.target = 10, .per_unit = 0.25};
  EXPECT_EQ(score(bytes, {resp("12345678901234"), resp("short")}),
            (std::vector<double>{-1.0, 0.0}));
  LengthPenaltyOptions tokens{.target = 10, .per_unit = 0.5, .count_tokens = true};
  RewardSample s = resp("x");
  s.response_tokens = 12;
  EXPECT_EQ(score(tokens, {s}), (std::vector<double>{-1.0}));
  EXPECT_THROW(score(tokens, {resp("x")}), DataError);  // token count unknown
  EXPECT_THROW(make_reward_source(RegexMatchOptions{.pattern = "a{2,1}"}), ValueError);
  EXPECT_THROW(make_reward_source(LengthPenaltyOptions{.per_unit = -1}), ValueError);
}

TEST(RewardSourcesTest, RewardModelSourcePassesOnTheSamplesModelScore) {
  RewardSample a = resp("x"), b = resp("y");
  a.model_score = 1.5;
  b.model_score = -0.25;
  EXPECT_EQ(score(RewardModelOptions{}, {a, b}), (std::vector<double>{1.5, -0.25}));
  EXPECT_THROW(score(RewardModelOptions{}, {a, resp("z")}), DataError);  // no score computed
}

// A source returning fixed values, to test WeightedReward's checks.
class FixedSource : public RewardSource {
 public:
  explicit FixedSource(std::vector<double> v) : v_(std::move(v)) {}
  std::vector<double> score(const std::vector<RewardSample>&) override { return v_; }
  std::string describe() const override { return "fixed"; }

 private:
  std::vector<double> v_;
};

TEST(RewardSourcesTest, WeightedSumKeepsEachSourcesValues) {
  WeightedReward w;
  w.add("correct", 1.0, make_reward_source(ExactMatchOptions{.extract = {.kind = Extract::BOXED}}));
  w.add("length", 2.0, make_reward_source(LengthPenaltyOptions{.target = 10, .per_unit = 0.1}));
  // "\boxed{4}" is 9 bytes; the second response is 15 bytes: 5 over, -0.5; weighted -1.0.
  WeightedScores s = w.score({resp(R"(\boxed{4})"), resp(R"(xxxxxx\boxed{5})")});
  EXPECT_EQ(s.names, (std::vector<std::string>{"correct", "length"}));
  EXPECT_EQ(s.weights, (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(s.values[0], (std::vector<double>{1.0, 0.0}));
  EXPECT_EQ(s.values[1], (std::vector<double>{0.0, -0.5}));
  EXPECT_EQ(s.total, (std::vector<double>{1.0, -1.0}));
  std::map<std::string, double> m = s.means();
  EXPECT_EQ(m.at("reward/correct"), 0.5);
  EXPECT_EQ(m.at("reward/length"), -0.25);

  EXPECT_THROW(w.add("correct", 1.0, std::make_unique<FixedSource>(std::vector<double>{})),
               ValueError);  // duplicate name
  EXPECT_THROW(w.add("inf", std::numeric_limits<double>::infinity(),
                     std::make_unique<FixedSource>(std::vector<double>{})),
               ValueError);
  WeightedReward bad;
  bad.add("nan", 1.0, std::make_unique<FixedSource>(std::vector<double>{1.0, std::nan("")}));
  try {
    bad.score({resp("a"), resp("b")});
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("reward source 'nan' (fixed): expected a finite value "
                                         "for sample 1"),
              std::string::npos)
        << e.what();
  }
  WeightedReward short_source;
  short_source.add("short", 1.0, std::make_unique<FixedSource>(std::vector<double>{1.0}));
  EXPECT_THROW(short_source.score({resp("a"), resp("b")}), DataError);  // 1 value for 2 samples
}

}  // namespace
}  // namespace loom::rlhf

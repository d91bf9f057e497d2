// Rule reward sources, answer extraction, prompt-record fields and the weighted sum (see
// RewardSources.h). The command source lives in CommandReward.cpp.
#include "rlhf/RewardSources.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/util/Check.h"
#include "rlhf/CommandReward.h"
#include "rlhf/Regex.h"

namespace loom::rlhf {

namespace {

using nlohmann::json;

// Numbers with optional 1,000 grouping, decimals and exponent; \boxed{...} without nested braces.
constexpr const char* kNumberPattern =
    R"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?)";
constexpr const char* kAnswerPattern = R"((?i)answer\s*:[ \t]*([^\n]*))";
constexpr const char* kBoxedPattern = R"(\\boxed\{([^{}]*)\})";

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Parses a whole (trimmed) text as a finite number, ignoring grouping commas.
bool parse_number(const std::string& text, double* out) {
  std::string t = trim(text);
  t.erase(std::remove(t.begin(), t.end(), ','), t.end());
  if (t.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

json parse_field(const RewardSample& s, const std::string& key, const std::string& component) {
  auto it = s.fields.find(key);
  LOOM_CHECK_T(DataError, it != s.fields.end(), component, ": expected field '", key,
               "' in the prompt record, got none (fields: ", s.fields.size(), ")");
  json j = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  LOOM_CHECK_T(DataError, !j.is_discarded(), component, ": expected field '", key,
               "' to hold JSON text, got '", it->second, "'");
  return j;
}

std::string json_text(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

// Rethrows with the sample index added to the context.
template <class Fn>
std::vector<double> per_sample(const std::vector<RewardSample>& batch, const std::string& name,
                               Fn&& fn) {
  std::vector<double> out;
  out.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    try {
      out.push_back(fn(batch[i]));
    } catch (Error& e) {
      e.add_context("scoring sample " + std::to_string(i) + " with " + name);
      throw;
    }
  }
  return out;
}

class ExactMatchReward : public RewardSource {
 public:
  explicit ExactMatchReward(const ExactMatchOptions& o) : o_(o), extractor_(o.extract) {}
  std::string describe() const override { return "exact_match(" + o_.reference_field + ")"; }
  std::vector<double> score(const std::vector<RewardSample>& batch) override {
    return per_sample(batch, describe(), [&](const RewardSample& s) {
      json ref = parse_field(s, o_.reference_field, describe());
      std::string answer;
      if (!extractor_.extract(s.response, &answer)) return o_.incorrect;
      const json refs = ref.is_array() ? ref : json::array({ref});
      for (const json& r : refs) {
        std::string want = trim(json_text(r));
        if (o_.case_sensitive ? answer == want : lower(answer) == lower(want)) return o_.correct;
      }
      return o_.incorrect;
    });
  }

 private:
  ExactMatchOptions o_;
  AnswerExtractor extractor_;
};

class NumericMatchReward : public RewardSource {
 public:
  explicit NumericMatchReward(const NumericMatchOptions& o) : o_(o), extractor_(o.extract) {
    LOOM_CHECK(o.tolerance >= 0 && std::isfinite(o.tolerance),
               "numeric_match: expected tolerance >= 0, got ", o.tolerance);
  }
  std::string describe() const override { return "numeric_match(" + o_.reference_field + ")"; }
  std::vector<double> score(const std::vector<RewardSample>& batch) override {
    return per_sample(batch, describe(), [&](const RewardSample& s) {
      const std::string ref_text = json_text(parse_field(s, o_.reference_field, describe()));
      double ref = 0, x = 0;
      LOOM_CHECK_T(DataError, parse_number(ref_text, &ref), describe(),
                   ": expected a number in field '", o_.reference_field, "', got '", ref_text, "'");
      std::string answer;
      if (!extractor_.extract(s.response, &answer) || !parse_number(answer, &x)) {
        return o_.incorrect;
      }
      const double bound = o_.relative ? o_.tolerance * std::abs(ref) : o_.tolerance;
      return std::abs(x - ref) <= bound ? o_.correct : o_.incorrect;
    });
  }

 private:
  NumericMatchOptions o_;
  AnswerExtractor extractor_;
};

class RegexMatchReward : public RewardSource {
 public:
  RegexMatchReward(std::string name, const std::string& pattern, double matched, double unmatched)
      : name_(std::move(name)),
        regex_(pattern, name_ + ".pattern"),
        matched_(matched),
        unmatched_(unmatched) {}
  std::string describe() const override { return name_ + "(" + regex_.pattern() + ")"; }
  std::vector<double> score(const std::vector<RewardSample>& batch) override {
    return per_sample(batch, describe(), [&](const RewardSample& s) {
      return regex_.search(s.response) ? matched_ : unmatched_;
    });
  }

 private:
  std::string name_;
  Regex regex_;
  double matched_, unmatched_;
};

class LengthPenaltyReward : public RewardSource {
 public:
  explicit LengthPenaltyReward(const LengthPenaltyOptions& o) : o_(o) {
    LOOM_CHECK(o.target >= 0 && o.per_unit >= 0 && std::isfinite(o.per_unit),
               "length_penalty: expected target >= 0 and per_unit >= 0, got ", o.target, " and ",
               o.per_unit);
  }
  std::string describe() const override {
    return std::string("length_penalty(") + (o_.count_tokens ? "tokens" : "bytes") + ")";
  }
  std::vector<double> score(const std::vector<RewardSample>& batch) override {
    return per_sample(batch, describe(), [&](const RewardSample& s) {
      int64_t len = int64_t(s.response.size());
      if (o_.count_tokens) {
        LOOM_CHECK_T(DataError, s.response_tokens >= 0, describe(),
                     ": expected the sample's response_tokens, got none (-1)");
        len = s.response_tokens;
      }
      return -o_.per_unit * double(std::max<int64_t>(0, len - o_.target));
    });
  }

 private:
  LengthPenaltyOptions o_;
};

class RewardModelScore : public RewardSource {
 public:
  std::string describe() const override { return "reward_model"; }
  std::vector<double> score(const std::vector<RewardSample>& batch) override {
    return per_sample(batch, describe(), [&](const RewardSample& s) {
      LOOM_CHECK_T(DataError, !std::isnan(s.model_score), describe(),
                   ": expected the sample's reward-model score, got none (NaN)");
      return s.model_score;
    });
  }
};

}  // namespace

AnswerExtractor::AnswerExtractor(const ExtractOptions& o) : o_(o) {
  const char* preset = nullptr;
  switch (o.kind) {
    case Extract::WHOLE:
      return;
    case Extract::LAST_NUMBER:
      preset = kNumberPattern;
      break;
    case Extract::AFTER_ANSWER:
      preset = kAnswerPattern;
      break;
    case Extract::BOXED:
      preset = kBoxedPattern;
      break;
    case Extract::REGEX:
      LOOM_CHECK(!o.regex.empty(),
                 "extract: expected a non-empty regex for Extract::REGEX, got ''");
      break;
  }
  regex_ = std::make_unique<Regex>(preset ? std::string(preset) : o.regex, "extract.regex");
}

bool AnswerExtractor::extract(const std::string& text, std::string* answer) const {
  if (!regex_) {
    *answer = trim(text);
    return true;
  }
  std::vector<std::string> all = regex_->find_all(text);
  if (all.empty()) return false;
  *answer = trim(o_.take_first ? all.front() : all.back());
  return true;
}

RewardSample reward_sample_from_record(const std::string& record_json,
                                       const std::string& prompt_key) {
  json j = json::parse(record_json, nullptr, /*allow_exceptions=*/false);
  LOOM_CHECK_T(DataError, !j.is_discarded() && j.is_object(),
               "reward_sample_from_record: expected a JSON object, got '",
               record_json.substr(0, 200), "'");
  LOOM_CHECK_T(DataError, j.contains(prompt_key) && j[prompt_key].is_string(),
               "reward_sample_from_record: expected a string field '", prompt_key, "', got ",
               j.contains(prompt_key) ? j[prompt_key].type_name() : "none");
  RewardSample s;
  for (auto& [key, value] : j.items()) {
    if (key == prompt_key) {
      s.prompt = value.get<std::string>();
    } else {
      s.fields[key] = value.dump();
    }
  }
  return s;
}

std::string field_text(const RewardSample& s, const std::string& key,
                       const std::string& component) {
  return json_text(parse_field(s, key, component));
}

std::unique_ptr<RewardSource> make_reward_source(const RewardSpec& spec) {
  struct Make {
    std::unique_ptr<RewardSource> operator()(const ExactMatchOptions& o) const {
      return std::make_unique<ExactMatchReward>(o);
    }
    std::unique_ptr<RewardSource> operator()(const NumericMatchOptions& o) const {
      return std::make_unique<NumericMatchReward>(o);
    }
    std::unique_ptr<RewardSource> operator()(const RegexMatchOptions& o) const {
      return std::make_unique<RegexMatchReward>("regex_match", o.pattern, o.matched, o.unmatched);
    }
    std::unique_ptr<RewardSource> operator()(const FormatPenaltyOptions& o) const {
      LOOM_CHECK(o.penalty >= 0 && std::isfinite(o.penalty),
                 "format_penalty: expected penalty >= 0, got ", o.penalty);
      return std::make_unique<RegexMatchReward>("format_penalty", o.pattern, 0.0, -o.penalty);
    }
    std::unique_ptr<RewardSource> operator()(const LengthPenaltyOptions& o) const {
      return std::make_unique<LengthPenaltyReward>(o);
    }
    std::unique_ptr<RewardSource> operator()(const CommandRewardOptions& o) const {
      return std::make_unique<CommandReward>(o);
    }
    std::unique_ptr<RewardSource> operator()(const RewardModelOptions&) const {
      return std::make_unique<RewardModelScore>();
    }
  };
  return std::visit(Make{}, spec);
}

std::map<std::string, double> WeightedScores::means() const {
  std::map<std::string, double> out;
  for (size_t k = 0; k < names.size(); ++k) {
    double total_k = 0;
    for (double v : values[k]) total_k += v;
    out["reward/" + names[k]] = values[k].empty() ? 0.0 : total_k / double(values[k].size());
  }
  return out;
}

void WeightedReward::add(const std::string& name, double weight,
                         std::unique_ptr<RewardSource> source) {
  LOOM_CHECK(!name.empty(), "WeightedReward: expected a non-empty source name, got ''");
  LOOM_CHECK(std::isfinite(weight), "WeightedReward: expected a finite weight for '", name,
             "', got ", weight);
  LOOM_CHECK(source != nullptr, "WeightedReward: expected a source for '", name, "', got null");
  for (const Entry& e : sources_) {
    LOOM_CHECK(e.name != name, "WeightedReward: expected unique source names, got '", name,
               "' twice");
  }
  sources_.push_back({name, weight, std::move(source)});
}

WeightedScores WeightedReward::score(const std::vector<RewardSample>& batch) {
  WeightedScores out;
  out.total.assign(batch.size(), 0.0);
  for (Entry& e : sources_) {
    std::vector<double> v;
    try {
      v = e.source->score(batch);
    } catch (Error& err) {
      err.add_context("computing reward source '" + e.name + "'");
      throw;
    }
    LOOM_CHECK_T(DataError, v.size() == batch.size(), "reward source '", e.name, "' (",
                 e.source->describe(), "): expected ", batch.size(), " values, got ", v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      LOOM_CHECK_T(DataError, std::isfinite(v[i]), "reward source '", e.name, "' (",
                   e.source->describe(), "): expected a finite value for sample ", i, ", got ",
                   v[i]);
      out.total[i] += e.weight * v[i];
    }
    out.names.push_back(e.name);
    out.weights.push_back(e.weight);
    out.values.push_back(std::move(v));
  }
  return out;
}

}  // namespace loom::rlhf

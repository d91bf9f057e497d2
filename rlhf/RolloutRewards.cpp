// The PPO stage's composed reward (see RolloutRewards.h): config -> RewardSpec, scoring on the
// scorer rank, the broadcast of its values and the job-wide error agreement.
#include "rlhf/RolloutRewards.h"

#include "core/util/Check.h"
#include "parallel/data/DistributedRuntime.h"

namespace loom::rlhf {

using config::AnswerExtractConfig;
using config::RewardSourceConfig;

namespace {

ExtractOptions extract_options(const AnswerExtractConfig& e) {
  ExtractOptions o;
  switch (e.kind()) {
    case AnswerExtractConfig::LAST_NUMBER: o.kind = Extract::LAST_NUMBER; break;
    case AnswerExtractConfig::AFTER_ANSWER: o.kind = Extract::AFTER_ANSWER; break;
    case AnswerExtractConfig::BOXED: o.kind = Extract::BOXED; break;
    case AnswerExtractConfig::REGEX: o.kind = Extract::REGEX; break;
    default: o.kind = Extract::WHOLE; break;
  }
  o.regex = e.regex();
  o.take_first = e.take_first();
  return o;
}

// The scorer: tensor rank 0 of the last pipeline stage; its rank in the TP x PP group.
bool is_scorer_rank(const ProcessGrid& g) { return g.tp_rank() == 0 && g.is_last_stage(); }
int scorer_mp_rank(const ProcessGrid& g) { return g.tp_size() * (g.pp_size() - 1); }

}  // namespace

RewardSpec reward_spec(const RewardSourceConfig& r) {
  switch (r.kind_case()) {
    case RewardSourceConfig::kRewardModel:
      return RewardModelOptions{};
    case RewardSourceConfig::kExactMatch: {
      const auto& m = r.exact_match();
      return ExactMatchOptions{m.reference_field(), extract_options(m.extract()),
                               m.case_sensitive(), m.correct(), m.incorrect()};
    }
    case RewardSourceConfig::kRegex:
      return RegexMatchOptions{r.regex().pattern(), r.regex().matched(), r.regex().unmatched()};
    case RewardSourceConfig::kNumeric: {
      const auto& m = r.numeric();
      return NumericMatchOptions{m.reference_field(), extract_options(m.extract()), m.tolerance(),
                                 m.relative(), m.correct(), m.incorrect()};
    }
    case RewardSourceConfig::kLengthPenalty: {
      const auto& m = r.length_penalty();
      return LengthPenaltyOptions{m.target(), m.per_unit(), m.count_tokens()};
    }
    case RewardSourceConfig::kFormatPenalty:
      return FormatPenaltyOptions{r.format_penalty().pattern(), r.format_penalty().penalty()};
    case RewardSourceConfig::kCommand: {
      const auto& c = r.command();
      return CommandRewardOptions{{c.argv().begin(), c.argv().end()}, c.shell(), c.timeout_s(),
                                  c.stderr_path()};
    }
    case RewardSourceConfig::KIND_NOT_SET:
      break;
  }
  throw ConfigError("ppo.reward: expected a source kind (reward_model, exact_match, regex, "
                    "numeric, length_penalty, format_penalty or command), got none");
}

void raise_on_every_rank(Communicator& world, const std::exception_ptr& error) {
  if (world.size() == 1) {
    if (error) std::rethrow_exception(error);
    return;
  }
  Tensor flag = Tensor::from_vector<double>({error ? double(world.rank() + 1) : 0.0}, {1});
  world.all_reduce(flag, ReduceOp::Max);
  const int root = int(flag.item()) - 1;
  if (root < 0) return;
  std::string msg;
  if (world.rank() == root) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      msg = e.what();
    }
  }
  msg = dist::broadcast_string(world, msg, root);
  if (error) std::rethrow_exception(error);
  throw DataError(detail::str_cat(msg, "\n  (raised on rank ", root, ")"));
}

RolloutRewards::RolloutRewards(const config::PpoConfig& p, ProcessGrid& grid)
    : grid_(grid), scorer_(is_scorer_rank(grid)) {
  std::exception_ptr error;
  for (int i = 0; i < p.reward_size(); ++i) {
    const RewardSourceConfig& r = p.reward(i);
    names_.push_back(r.name());
    weights_.push_back(r.weight());
    uses_reward_model_ = uses_reward_model_ || r.has_reward_model();
    if (!scorer_ || error) continue;
    try {
      sources_.add(r.name(), r.weight(), make_reward_source(reward_spec(r)));
    } catch (const Error& e) {
      error = std::make_exception_ptr(ConfigError(detail::str_cat(
          "ppo.reward[", i, "] (", r.name(), "): ", e.what())));
    }
  }
  raise_on_every_rank(grid_.world(), error);
}

WeightedScores RolloutRewards::score(
    const std::function<std::vector<RewardSample>()>& make_samples, size_t n) {
  const size_t K = names_.size();
  std::vector<double> flat((K + 1) * n, 0.0);  // total, then each source's values
  std::exception_ptr error;
  if (scorer_) {
    try {
      WeightedScores s = sources_.score(make_samples());
      std::copy(s.total.begin(), s.total.end(), flat.begin());
      for (size_t k = 0; k < K; ++k)
        std::copy(s.values[k].begin(), s.values[k].end(), flat.begin() + long((k + 1) * n));
    } catch (...) {
      error = std::current_exception();
    }
  }
  raise_on_every_rank(grid_.world(), error);
  if (grid_.mp_group().size() > 1) {
    Tensor t = Tensor::from_vector<double>(flat, {int64_t(flat.size())});
    grid_.mp_group().broadcast(t, scorer_mp_rank(grid_));
    flat = t.to_vector<double>();
  }
  WeightedScores out;
  out.total.assign(flat.begin(), flat.begin() + long(n));
  out.names = names_;
  out.weights = weights_;
  for (size_t k = 0; k < K; ++k)
    out.values.emplace_back(flat.begin() + long((k + 1) * n), flat.begin() + long((k + 2) * n));
  return out;
}

std::string RolloutRewards::describe() const {
  std::string out;
  for (size_t k = 0; k < names_.size(); ++k)
    out += detail::str_cat(k ? " + " : "", weights_[k], "*", names_[k]);
  return out;
}

}  // namespace loom::rlhf

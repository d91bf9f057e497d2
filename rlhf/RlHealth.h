// Safe-default checks for RL runs: response statistics (how many responses ran into
// max_new_tokens without EOS) and a health check over per-iteration metrics that returns
// warnings naming the cause and the config field to change, for the stage to log.
//
//   ResponseStats rs = response_stats(responses, eos_id, max_new_tokens);
//   history.push_back({.iteration = it, .truncated_fraction = rs.truncated_fraction, ...});
//   for (const HealthWarning& w : health_check(history)) LOG(WARN) << w.message;
//   HealthMonitor mon;  // or, once per iteration, only what is new:
//   for (const HealthWarning& w : mon.update(metrics)) LOG(WARN) << w.message;
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace loom::rlhf {

struct ResponseStats {
  int64_t count = 0;
  double truncated_fraction = 0;  // no EOS and length >= max_new_tokens (cut by the limit)
  double no_eos_fraction = 0;     // no EOS at all (also cut by the context length)
  double mean_length = 0;         // tokens, EOS included
};
// responses: the sampled token ids of each response (EOS included when generated).
ResponseStats response_stats(const std::vector<std::vector<int32_t>>& responses, int32_t eos_id,
                             int64_t max_new_tokens);
inline double truncated_fraction(const std::vector<std::vector<int32_t>>& responses, int32_t eos_id,
                                 int64_t max_new_tokens) {
  return response_stats(responses, eos_id, max_new_tokens).truncated_fraction;
}

struct RlIterationMetrics {
  int64_t iteration = 0;
  double truncated_fraction = 0;     // ResponseStats::truncated_fraction
  double mean_response_length = 0;   // tokens
  int64_t max_new_tokens = 0;        // the rollout limit (0: unknown, length check off)
  double kl = 0;                     // mean per-sequence KL(pi || pi_ref) estimate (k1 sum), nats
  double reward_mean = 0;            // mean score of the iteration's samples
  double zero_variance_groups = -1;  // share of prompt groups with all-equal rewards; < 0: n/a
};

// Each check fires when its metric is strictly beyond the threshold.
struct HealthThresholds {
  double max_truncated_fraction = 0.2;  // of the last iteration's responses
  double max_length_ratio = 0.9;        // mean response length / max_new_tokens
  double max_kl = 20.0;                 // nats per sequence
  double min_kl = -1.0;                 // k1's mean is >= 0 on on-policy samples
  int64_t reward_window = 10;           // iterations in the reward trend (>= 3)
  double min_reward_slope_t = -3.0;     // t-statistic of the least-squares slope over the window
  double max_reward_slope_t = 3.0;      // a rising reward, checked with the length at the limit
  double max_zero_variance_groups = 0.5;
  std::string config_prefix = "ppo";  // the stage's config block, for the field names
};

struct HealthWarning {
  std::string cause;         // "truncation", "length_near_limit", "kl_high", "kl_negative",
                             // "reward_decline", "reward_rises_at_length_limit",
                             // "no_group_signal"
  std::string config_field;  // e.g. "ppo.rollout.max_new_tokens"
  std::string message;       // one line: what was seen, the threshold, and what to change
};

// Warnings for the last entry of `history` (and the reward trend over its last reward_window
// entries); empty when all is well or the history is empty.
std::vector<HealthWarning> health_check(const std::vector<RlIterationMetrics>& history,
                                        const HealthThresholds& t = {});

// What the RL stage logs: keeps the last reward_window iterations and returns the warnings to
// report at this one. A cause is reported when it fires for the first time or after at least
// reward_window iterations without firing, so a metric hovering at its threshold (e.g. the share
// of equal-reward groups of a policy that solves most prompts) is reported once, not at every
// crossing.
class HealthMonitor {
 public:
  explicit HealthMonitor(HealthThresholds t = {}) : t_(std::move(t)) {}
  std::vector<HealthWarning> update(const RlIterationMetrics& m);

 private:
  HealthThresholds t_;
  std::vector<RlIterationMetrics> history_;
  std::map<std::string, int64_t> last_fired_;  // cause -> iteration it last fired at
};

}  // namespace loom::rlhf

// Response statistics and the RL health check (see RlHealth.h). Each check is one comparison
// against a threshold; the reward trend is the t-statistic of a least-squares line.
#include "rlhf/RlHealth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/util/Check.h"

namespace loom::rlhf {

namespace {

// printf-style formatting for the messages.
template <class... Args>
std::string fmt(const char* f, Args... args) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), f, args...);
  return buf;
}

struct Trend {
  double slope = 0, t = 0, first = 0, last = 0;  // first/last: fitted values at the window ends
};

// Least-squares line through (0, y0) ... (n-1, y_{n-1}); t = slope / its standard error
// (-inf/+inf for a noiseless nonzero slope, 0 for a flat line).
Trend fit_trend(const std::vector<double>& y) {
  const double n = double(y.size()), xm = (n - 1) / 2;
  double ym = 0;
  for (double v : y) ym += v / n;
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    sxx += (double(i) - xm) * (double(i) - xm);
    sxy += (double(i) - xm) * (y[i] - ym);
  }
  Trend tr;
  tr.slope = sxy / sxx;
  double sse = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double r = y[i] - (ym + tr.slope * (double(i) - xm));
    sse += r * r;
  }
  const double se = std::sqrt(sse / (n - 2) / sxx);
  if (se > 0) {
    tr.t = tr.slope / se;
  } else if (tr.slope != 0) {
    tr.t = std::copysign(std::numeric_limits<double>::infinity(), tr.slope);
  }
  tr.first = ym - tr.slope * xm;
  tr.last = ym + tr.slope * xm;
  return tr;
}

void check_length(const RlIterationMetrics& m, const HealthThresholds& t, const std::string& p,
                  std::vector<HealthWarning>* out) {
  const bool truncated = m.truncated_fraction > t.max_truncated_fraction;
  if (truncated) {
    out->push_back(
        {"truncation", p + ".rollout.max_new_tokens",
         fmt("responses hit max_new_tokens without EOS on %.0f%% of samples (threshold "
             "%.0f%%); raise %s.rollout.max_new_tokens (with %s.truncated_responses MASK those "
             "responses teach nothing; with KEEP set %s.missing_eos_penalty)",
             100 * m.truncated_fraction, 100 * t.max_truncated_fraction, p.c_str(), p.c_str(),
             p.c_str())});
  }
  if (truncated || m.max_new_tokens <= 0) return;  // one length warning is enough
  const double ratio = m.mean_response_length / double(m.max_new_tokens);
  if (ratio > t.max_length_ratio) {
    out->push_back({"length_near_limit", p + ".rollout.max_new_tokens",
                    fmt("mean response length is %.1f of max_new_tokens %lld (%.0f%%, threshold "
                        "%.0f%%); raise %s.rollout.max_new_tokens or add a length_penalty reward",
                        m.mean_response_length, static_cast<long long>(m.max_new_tokens),
                        100 * ratio, 100 * t.max_length_ratio, p.c_str())});
  }
}

void check_kl(const RlIterationMetrics& m, const HealthThresholds& t, const std::string& p,
              std::vector<HealthWarning>* out) {
  if (m.kl > t.max_kl) {
    out->push_back({"kl_high", p + ".kl_coef",
                    fmt("KL to the reference is %.3g nats per sequence (threshold %.3g); raise "
                        "%s.kl_coef (or set %s.adaptive_kl with a %s.kl_target)",
                        m.kl, t.max_kl, p.c_str(), p.c_str(), p.c_str())});
  }
  if (m.kl < t.min_kl) {
    out->push_back({"kl_negative", p + ".rollout.temperature",
                    fmt("KL estimate is %.3g nats per sequence (threshold %.3g), impossible for "
                        "tokens sampled from the policy; sample with %s.rollout.temperature 1, "
                        "top_k 0 and top_p 1, or score the log-probs of the sampling distribution",
                        m.kl, t.min_kl, p.c_str())});
  }
}

// The reward rises significantly while the responses sit at the limit: the reward may be paying
// for length (or for whatever a cut response happens to contain).
void check_length_hacking(const RlIterationMetrics& m, const Trend& tr, const HealthThresholds& t,
                          const std::string& p, std::vector<HealthWarning>* out) {
  if (tr.t <= t.max_reward_slope_t) return;
  const double ratio =
      m.max_new_tokens > 0 ? m.mean_response_length / double(m.max_new_tokens) : 0.0;
  if (ratio <= t.max_length_ratio && m.truncated_fraction <= t.max_truncated_fraction) return;
  out->push_back(
      {"reward_rises_at_length_limit", p + ".reward",
       fmt("reward rose from %.3g to %.3g over the last %lld iterations (t = %.2f, threshold "
           "%.2f) while responses sit at the length limit (mean length %.0f%% of max_new_tokens, "
           "%.0f%% cut without EOS): the reward may be paying for length; add a length_penalty "
           "source to %s.reward or set %s.overlong_buffer, and read the samples",
           tr.first, tr.last, static_cast<long long>(t.reward_window), tr.t, t.max_reward_slope_t,
           100 * ratio, 100 * m.truncated_fraction, p.c_str(), p.c_str())});
}

}  // namespace

ResponseStats response_stats(const std::vector<std::vector<int32_t>>& responses, int32_t eos_id,
                             int64_t max_new_tokens) {
  LOOM_CHECK(max_new_tokens > 0, "response_stats: expected max_new_tokens > 0, got ",
             max_new_tokens);
  ResponseStats s;
  s.count = int64_t(responses.size());
  if (responses.empty()) return s;
  for (const std::vector<int32_t>& r : responses) {
    const bool eos = std::find(r.begin(), r.end(), eos_id) != r.end();
    s.no_eos_fraction += eos ? 0.0 : 1.0;
    s.truncated_fraction += !eos && int64_t(r.size()) >= max_new_tokens ? 1.0 : 0.0;
    s.mean_length += double(r.size());
  }
  const double n = double(responses.size());
  s.no_eos_fraction /= n;
  s.truncated_fraction /= n;
  s.mean_length /= n;
  return s;
}

std::vector<HealthWarning> health_check(const std::vector<RlIterationMetrics>& history,
                                        const HealthThresholds& t) {
  LOOM_CHECK(t.reward_window >= 3, "health_check: expected reward_window >= 3, got ",
             t.reward_window);
  std::vector<HealthWarning> out;
  if (history.empty()) return out;
  const RlIterationMetrics& m = history.back();
  const std::string& p = t.config_prefix;
  check_length(m, t, p, &out);
  check_kl(m, t, p, &out);
  if (int64_t(history.size()) >= t.reward_window) {
    std::vector<double> y;
    for (size_t i = history.size() - size_t(t.reward_window); i < history.size(); ++i) {
      y.push_back(history[i].reward_mean);
    }
    const Trend tr = fit_trend(y);
    if (tr.t < t.min_reward_slope_t) {
      out.push_back({"reward_decline", "optimizer.lr",
                     fmt("reward fell from %.3g to %.3g over the last %lld iterations (slope %.3g "
                         "per iteration, t = %.2f, threshold %.2f); lower optimizer.lr or raise "
                         "%s.kl_coef",
                         tr.first, tr.last, static_cast<long long>(t.reward_window), tr.slope, tr.t,
                         t.min_reward_slope_t, p.c_str())});
    }
    check_length_hacking(m, tr, t, p, &out);
  }
  if (m.zero_variance_groups > t.max_zero_variance_groups) {
    out.push_back({"no_group_signal", p + ".group_size",
                   fmt("%.0f%% of prompt groups gave every sample the same reward (threshold "
                       "%.0f%%), so they carry no advantage signal (expected for prompts the "
                       "policy always solves); raise %s.group_size or set "
                       "%s.drop_equal_reward_groups",
                       100 * m.zero_variance_groups, 100 * t.max_zero_variance_groups, p.c_str(),
                       p.c_str())});
  }
  return out;
}

std::vector<HealthWarning> HealthMonitor::update(const RlIterationMetrics& m) {
  history_.push_back(m);
  if (int64_t(history_.size()) > t_.reward_window) history_.erase(history_.begin());
  std::vector<HealthWarning> out;
  for (HealthWarning& w : health_check(history_, t_)) {
    const auto it = last_fired_.find(w.cause);
    const bool report = it == last_fired_.end() || m.iteration - it->second > t_.reward_window;
    last_fired_[w.cause] = m.iteration;
    if (report) out.push_back(std::move(w));
  }
  return out;
}

}  // namespace loom::rlhf

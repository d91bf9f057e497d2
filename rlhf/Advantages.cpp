// Critic-free advantage estimators and DAPO's sampling / length shaping (see Advantages.h). Plain
// f64 loops over the scores: these are constants for the loss, so no autograd is involved.
#include "rlhf/Advantages.h"

#include <algorithm>
#include <cmath>

#include "core/ops/Elementwise.h"
#include "core/util/Check.h"
#include "rlhf/Losses.h"

namespace loom::rlhf {

namespace {

// The scores as f64 values, after checking (N) with N a positive multiple of group_size >= 2.
std::vector<double> group_scores(const char* op, const Tensor& scores, int64_t group_size) {
  LOOM_CHECK(group_size >= 2, op, ": expected group_size >= 2 samples per prompt, got ",
             group_size);
  LOOM_CHECK(scores.dim() == 1 && scores.numel() > 0 && scores.numel() % group_size == 0, op,
             ": expected scores of shape (N) with N a positive multiple of group_size ", group_size,
             ", got ", scores.shape());
  return scores.to_vector<double>();
}

Tensor like(const std::vector<double>& v, const Tensor& ref, const Shape& shape) {
  return Tensor::from_vector(v, shape, ref.device()).to(ref.dtype());
}

}  // namespace

Tensor grpo_advantages(const Tensor& scores, const GroupAdvantageOptions& o) {
  std::vector<double> r = group_scores("grpo_advantages", scores, o.group_size);
  LOOM_CHECK(o.eps >= 0, "grpo_advantages: expected eps >= 0, got ", o.eps);
  const size_t n = size_t(o.group_size);
  std::vector<double> adv(r.size());
  for (size_t g = 0; g < r.size(); g += n) {
    double mean = 0, ss = 0;
    for (size_t i = g; i < g + n; ++i) mean += r[i];
    mean /= double(n);
    for (size_t i = g; i < g + n; ++i) ss += (r[i] - mean) * (r[i] - mean);
    const double scale = o.scale_by_std ? 1.0 / (std::sqrt(ss / double(n - 1)) + o.eps) : 1.0;
    for (size_t i = g; i < g + n; ++i) adv[i] = (r[i] - mean) * scale;
  }
  return like(adv, scores, scores.shape());
}

Tensor rloo_advantages(const Tensor& scores, int64_t group_size) {
  std::vector<double> r = group_scores("rloo_advantages", scores, group_size);
  const size_t n = size_t(group_size);
  std::vector<double> adv(r.size());
  for (size_t g = 0; g < r.size(); g += n) {
    double total = 0;
    for (size_t i = g; i < g + n; ++i) total += r[i];
    for (size_t i = g; i < g + n; ++i) adv[i] = r[i] - (total - r[i]) / double(n - 1);
  }
  return like(adv, scores, scores.shape());
}

Tensor token_advantages(const Tensor& adv, const Tensor& mask) {
  LOOM_CHECK(adv.dim() == 1 && mask.dim() == 2 && adv.size(0) == mask.size(0),
             "token_advantages: expected adv (B) and mask (B,T), got ", adv.shape(), " and ",
             mask.shape());
  Tensor m = mask.detach();
  return adv.detach().unsqueeze(1) * (m.dtype() == adv.dtype() ? m : m.to(adv.dtype()));
}

ReinforcePpOutput reinforce_pp_advantages(const Tensor& score, const Tensor& logp,
                                          const Tensor& ref_logp, const Tensor& mask,
                                          double kl_coef, double gamma) {
  LOOM_CHECK(gamma >= 0 && gamma <= 1, "reinforce_pp_advantages: expected gamma in [0, 1], got ",
             gamma);
  ReinforcePpOutput out;
  out.rewards = compute_rewards(score, logp.detach(), ref_logp, mask, kl_coef);
  const int64_t B = logp.size(0), T = logp.size(1);
  std::vector<double> r = out.rewards.to_vector<double>(), m = mask.to_vector<double>();
  std::vector<double> ret(r.size(), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double running = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      const size_t i = size_t(b * T + t);
      if (m[i] == 0.0) continue;  // prompt / padding: skipped, as in gae()
      running = r[i] + gamma * running;
      ret[i] = running;
    }
  }
  out.returns = like(ret, logp, logp.shape());
  out.advantages = masked_whiten(out.returns, mask);
  return out;
}

std::vector<bool> dynamic_sampling_keep(const Tensor& scores, int64_t group_size, double tol) {
  std::vector<double> r = group_scores("dynamic_sampling_keep", scores, group_size);
  LOOM_CHECK(tol >= 0, "dynamic_sampling_keep: expected tol >= 0, got ", tol);
  const size_t n = size_t(group_size);
  std::vector<bool> keep;
  for (size_t g = 0; g < r.size(); g += n) {
    auto [lo, hi] = std::minmax_element(r.begin() + long(g), r.begin() + long(g + n));
    keep.push_back(*hi - *lo > tol);
  }
  return keep;
}

Tensor kept_sample_indices(const std::vector<bool>& keep, int64_t group_size) {
  LOOM_CHECK(group_size >= 1, "kept_sample_indices: expected group_size >= 1, got ", group_size);
  std::vector<int64_t> idx;
  for (size_t g = 0; g < keep.size(); ++g) {
    if (!keep[g]) continue;
    for (int64_t i = 0; i < group_size; ++i) idx.push_back(int64_t(g) * group_size + i);
  }
  return Tensor::from_vector(idx, {int64_t(idx.size())});
}

std::vector<double> overlong_penalty(const std::vector<int64_t>& lengths, int64_t max_length,
                                     int64_t cache_length, double factor) {
  LOOM_CHECK(cache_length > 0 && cache_length <= max_length,
             "overlong_penalty: expected 0 < cache_length <= max_length ", max_length, ", got ",
             cache_length);
  const int64_t soft_start = max_length - cache_length;
  std::vector<double> out;
  out.reserve(lengths.size());
  for (int64_t len : lengths) {
    LOOM_CHECK(len >= 0, "overlong_penalty: expected lengths >= 0, got ", len);
    double p = 0.0;
    if (len > max_length) {
      p = -1.0;
    } else if (len > soft_start) {
      p = double(soft_start - len) / double(cache_length);
    }
    out.push_back(p * factor);
  }
  return out;
}

}  // namespace loom::rlhf

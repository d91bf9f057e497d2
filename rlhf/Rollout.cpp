// Rollout building, shaping and advantages (see Rollout.h). Host vectors in (B,T) row-major order
// so mini-batches are plain row gathers; every model pass is forward-only in eval mode, read on
// the last pipeline stage through MicroBatch objectives.
#include "rlhf/Rollout.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "rlhf/Advantages.h"
#include "rlhf/Losses.h"
#include "rlhf/Ppo.h"
#include "train/Learner.h"

namespace loom::rlhf {

namespace {

Tensor host_tensor(const std::vector<float>& v, int64_t B, int64_t T) {
  return Tensor::from_vector<float>(v, {B, T}, Device::cpu());
}

// A forward-only pass of `model` over (ids, targets) under the grid's layout; take(h) sees the
// final hidden states on the last pipeline stage.
void forward_pass(models::GPT& model, ProcessGrid& grid, const Tensor& ids, const Tensor& targets,
                  const std::function<void(const Tensor& h)>& take) {
  pipeline::MicroBatch mb{ids, targets, 0, {}};
  mb.objective = [&](const Tensor& h) {
    take(h);
    return Tensor::scalar(0.0, DType::F32, h.device());
  };
  train::forward_only(model, grid, {mb});
}

// Lays out prompt + response rows (ids, targets, mask, response lengths).
Rollout layout(const std::vector<std::vector<int32_t>>& prompts,
               const std::vector<std::vector<int64_t>>& responses, int64_t pad_id) {
  LOOM_CHECK(prompts.size() == responses.size() && !prompts.empty(),
             "build_rollout: expected as many responses as prompts (> 0), got ", responses.size(),
             " and ", prompts.size());
  Rollout r;
  r.rows = int64_t(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    LOOM_CHECK(!prompts[i].empty() && !responses[i].empty(),
               "build_rollout: expected a non-empty prompt and response, row ", i);
    r.T = std::max<int64_t>(r.T, int64_t(prompts[i].size() + responses[i].size()));
  }
  const int64_t B = r.rows, T = r.T;
  r.ids.assign(size_t(B * T), pad_id);
  r.targets.assign(size_t(B * T), -100);
  r.mask.assign(size_t(B * T), 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> seq(prompts[size_t(b)].begin(), prompts[size_t(b)].end());
    seq.insert(seq.end(), responses[size_t(b)].begin(), responses[size_t(b)].end());
    const int64_t P = int64_t(prompts[size_t(b)].size()), L = int64_t(seq.size());
    for (int64_t t = 0; t < L; ++t) r.ids[size_t(b * T + t)] = seq[size_t(t)];
    for (int64_t t = P - 1; t + 1 < L; ++t) {
      r.targets[size_t(b * T + t)] = seq[size_t(t + 1)];
      r.mask[size_t(b * T + t)] = 1.0f;
    }
    r.resp_len.push_back(double(L - P));
  }
  r.loss_mask = r.mask;
  return r;
}

// Whitens x over the masked elements of every rank: (x - mean) / sqrt(var + 1e-8) with the
// Bessel-corrected variance (masked_whiten's formula), 0 outside the mask.
std::vector<float> whiten_global(const std::vector<double>& x, const std::vector<float>& mask,
                                 const SumReducer& reduce) {
  std::vector<double> s = {0.0, 0.0, 0.0};
  for (size_t i = 0; i < x.size(); ++i) {
    s[0] += mask[i] * x[i];
    s[1] += mask[i] * x[i] * x[i];
    s[2] += mask[i];
  }
  if (reduce) reduce(s);
  const double n = s[2], mean = n > 0 ? s[0] / n : 0.0;
  const double var = n > 1 ? (s[1] - n * mean * mean) / (n - 1) : 0.0;
  const double inv = 1.0 / std::sqrt(std::max(var, 0.0) + 1e-8);
  std::vector<float> out(x.size(), 0.0f);
  for (size_t i = 0; i < x.size(); ++i)
    if (mask[i] != 0.0f) out[i] = float((x[i] - mean) * inv);
  return out;
}

}  // namespace

Rollout build_rollout(RolloutModels m, const std::vector<std::vector<int32_t>>& prompts,
                      const std::vector<std::vector<int64_t>>& responses, int64_t pad_id,
                      double temperature, Device device, int64_t vocab) {
  Rollout r = layout(prompts, responses, pad_id);
  const int64_t B = r.rows, T = r.T;
  NoGradGuard g;
  Tensor ids = Tensor::from_vector<int64_t>(r.ids, {B, T}, device);
  Tensor targets = Tensor::from_vector<int64_t>(r.targets, {B, T}, device);
  Tensor logp, ref_logp, values;
  forward_pass(m.actor, m.grid, ids, targets, [&](const Tensor& h) {
    logp = m.actor.token_logprobs(h, targets, temperature, vocab);
  });
  forward_pass(m.reference, m.grid, ids, targets, [&](const Tensor& h) {
    ref_logp = m.reference.token_logprobs(h, targets, temperature, vocab);
  });
  if (m.critic) {
    forward_pass(*m.critic, m.grid, ids, targets,
                 [&](const Tensor& h) { values = m.critic->values_of(h); });
  }
  r.kl.assign(size_t(B), 0.0);
  if (!m.actor.is_last()) {  // the outputs live on the last stage
    r.logp.assign(size_t(B * T), 0.0f);
    r.ref_logp = r.logp;
    if (m.critic) r.values = r.logp;
    return r;
  }
  r.logp = logp.to_vector<float>();
  r.ref_logp = ref_logp.to_vector<float>();
  if (m.critic) r.values = values.to_vector<float>();
  for (int64_t i = 0; i < B * T; ++i)
    r.kl[size_t(i / T)] += double(r.mask[size_t(i)]) * (double(r.logp[size_t(i)]) -
                                                        double(r.ref_logp[size_t(i)]));
  return r;
}

LogprobGap logprob_gap(const Rollout& r, const std::vector<int64_t>& prompt_len,
                       const std::vector<std::vector<double>>& engine) {
  LOOM_CHECK(int64_t(prompt_len.size()) == r.rows && int64_t(engine.size()) == r.rows &&
                 int64_t(r.logp.size()) == r.rows * r.T,
             "logprob_gap: expected ", r.rows, " rows of prompts, engine log-probs and ", r.T,
             " training log-probs each, got ", prompt_len.size(), ", ", engine.size(), " and ",
             r.logp.size());
  LogprobGap g;
  for (int64_t b = 0; b < r.rows; ++b) {
    const std::vector<double>& e = engine[size_t(b)];
    const int64_t first = prompt_len[size_t(b)] - 1;  // the position predicting response token 0
    LOOM_CHECK(first >= 0 && first + int64_t(e.size()) <= r.T, "logprob_gap: row ", b, " has ",
               e.size(), " response log-probs after a prompt of ", prompt_len[size_t(b)],
               " tokens; expected at most ", r.T, " positions in all");
    for (size_t k = 0; k < e.size(); ++k) {
      const double d = std::abs(e[k] - double(r.logp[size_t(b * r.T + first + int64_t(k))]));
      g.sum += d;
      g.count += 1.0;
      g.max = std::max(g.max, d);
    }
  }
  return g;
}

std::vector<double> reward_model_scores(models::RewardModel& reward, ProcessGrid& grid,
                                        const Rollout& r, Device device) {
  std::vector<int64_t> last;
  for (int64_t b = 0; b < r.rows; ++b) {
    int64_t l = 0;
    for (int64_t t = 0; t < r.T; ++t)
      if (r.mask[size_t(b * r.T + t)] != 0.0f) l = t + 1;  // the last response token's position
    last.push_back(l);
  }
  NoGradGuard g;
  Tensor ids = Tensor::from_vector<int64_t>(r.ids, {r.rows, r.T}, device);
  Tensor targets = Tensor::from_vector<int64_t>(r.targets, {r.rows, r.T}, device);
  Tensor last_t = Tensor::from_vector<int64_t>(last, {r.rows}, device);
  Tensor score;
  forward_pass(reward, grid, ids, targets, [&](const Tensor& h) {
    score = models::select_last(reward.values_of(h), last_t);
  });
  if (!reward.is_last()) return std::vector<double>(size_t(r.rows), 0.0);
  return score.to_vector<double>();
}

void exclude_rows(Rollout& r, const std::vector<bool>& keep) {
  LOOM_CHECK(int64_t(keep.size()) == r.rows, "exclude_rows: expected ", r.rows,
             " flags, got ", keep.size());
  for (int64_t b = 0; b < r.rows; ++b)
    if (!keep[size_t(b)])
      std::fill(r.loss_mask.begin() + b * r.T, r.loss_mask.begin() + (b + 1) * r.T, 0.0f);
}

ShapedScores shape_scores(const std::vector<double>& raw,
                          const std::vector<std::vector<int64_t>>& responses,
                          const ShapingOptions& o) {
  LOOM_CHECK(raw.size() == responses.size() && o.group_size >= 1 &&
                 raw.size() % size_t(o.group_size) == 0,
             "shape_scores: expected one score per response in whole groups of ", o.group_size,
             ", got ", raw.size(), " scores and ", responses.size(), " responses");
  ShapedScores s{raw, std::vector<bool>(raw.size(), true), 0, 0};
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < raw.size(); ++i) {
    const bool eos = !responses[i].empty() && responses[i].back() == o.eos_id;
    lengths.push_back(int64_t(responses[i].size()));
    if (eos) continue;
    ++s.no_eos;
    s.scores[i] -= o.missing_eos_penalty;
    if (o.mask_truncated) s.keep[i] = false;
  }
  if (o.overlong_buffer > 0) {
    std::vector<double> p =
        overlong_penalty(lengths, o.max_new_tokens, o.overlong_buffer, o.overlong_factor);
    for (size_t i = 0; i < p.size(); ++i) s.scores[i] += p[i];
  }
  if (o.group_size < 2) return s;
  std::vector<bool> signal = dynamic_sampling_keep(
      Tensor::from_vector<double>(s.scores, {int64_t(s.scores.size())}), o.group_size);
  for (size_t g = 0; g < signal.size(); ++g) {
    if (signal[g]) continue;
    ++s.equal_groups;
    if (!o.drop_equal_groups) continue;
    for (size_t i = g * size_t(o.group_size); i < (g + 1) * size_t(o.group_size); ++i)
      s.keep[i] = false;
  }
  return s;
}

void compute_advantages(Rollout& r, const AdvantageOptions& o, const SumReducer& reduce) {
  const int64_t B = r.rows, T = r.T;
  LOOM_CHECK(int64_t(r.scores.size()) == B, "compute_advantages: expected ", B,
             " scores, got ", r.scores.size());
  Tensor lm = host_tensor(r.loss_mask, B, T);
  Tensor scores = Tensor::from_vector<double>(r.scores, {B}, Device::cpu());
  switch (o.algorithm) {
    case RlAlgorithm::PPO: {
      LOOM_CHECK(int64_t(r.values.size()) == B * T,
                 "compute_advantages: expected critic values (B,T) for PPO, got ", r.values.size());
      Tensor rewards = compute_rewards(scores.to(DType::F32), host_tensor(r.logp, B, T),
                                       host_tensor(r.ref_logp, B, T), lm, o.kl_coef);
      GaeOutput g = gae(rewards, host_tensor(r.values, B, T), lm, o.gamma, o.lam);
      r.returns = g.returns.to_vector<float>();
      r.advantages = whiten_global(g.advantages.to_vector<double>(), r.loss_mask, reduce);
      return;
    }
    case RlAlgorithm::REINFORCE_PP: {
      ReinforcePpOutput p =
          reinforce_pp_advantages(scores.to(DType::F32), host_tensor(r.logp, B, T),
                                  host_tensor(r.ref_logp, B, T), lm, o.kl_coef, o.gamma);
      r.advantages = whiten_global(p.returns.to_vector<double>(), r.loss_mask, reduce);
      return;
    }
    case RlAlgorithm::GRPO:
    case RlAlgorithm::RLOO: {
      Tensor adv;
      if (o.algorithm == RlAlgorithm::GRPO) {
        adv = grpo_advantages(scores, {.group_size = o.group_size, .scale_by_std = o.scale_by_std});
      } else {
        std::vector<double> s = r.scores;
        for (int64_t b = 0; b < B; ++b) s[size_t(b)] -= o.kl_coef * r.kl[size_t(b)];
        adv = rloo_advantages(Tensor::from_vector<double>(s, {B}, Device::cpu()), o.group_size);
      }
      r.advantages = token_advantages(adv, lm.to(DType::F64)).to(DType::F32).to_vector<float>();
      return;
    }
  }
}

}  // namespace loom::rlhf

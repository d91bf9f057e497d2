// Bookkeeping of one RL iteration (rlhf/Rollout.h, rlhf/PolicyUpdate.h) on tiny random models:
// rollout layout (ids, targets, masks, padding), log-probs aligned with the response tokens, the
// reward model's score at the last token, score shaping (responses without EOS, over-long ones,
// equal-reward groups), each algorithm's advantages (PPO's whitened GAE and REINFORCE++'s whitened
// returns also under a simulated second rank) and the mini-batch updates of the learners.
#include <gtest/gtest.h>

#include <cmath>

#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "models/Generate.h"
#include "parallel/comm/FakeCommunicator.h"
#include "rlhf/Advantages.h"
#include "rlhf/Losses.h"
#include "rlhf/PolicyUpdate.h"
#include "rlhf/Ppo.h"
#include "rlhf/Rollout.h"

namespace loom::rlhf {
namespace {

models::GPTConfig tiny_config() {
  models::GPTConfig c;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 16;
  c.vocab_size = 32;
  c.block_size = 16;
  c.dropout = 0.0;
  return c;
}

template <class M>
std::unique_ptr<M> make(uint64_t seed) {
  auto m = std::make_unique<M>(tiny_config());
  m->init_weights(seed);
  m->eval();
  return m;
}

struct Models {
  explicit Models(uint64_t ref_seed)
      : grid(FakeCommunicator::create_world(1)[0], 1, 1, 1),
        actor(make<models::GPT>(1)),
        reference(make<models::GPT>(ref_seed)),
        critic(make<models::RewardModel>(3)),
        reward(make<models::RewardModel>(4)) {}
  RolloutModels get(bool with_critic = true) {
    return {*actor, *reference, with_critic ? critic.get() : nullptr, grid};
  }
  ProcessGrid grid;
  std::unique_ptr<models::GPT> actor, reference;
  std::unique_ptr<models::RewardModel> critic, reward;
};

const std::vector<std::vector<int32_t>> kPrompts = {{1, 2, 3}, {4, 5}};
const std::vector<std::vector<int64_t>> kResponses = {{6, 7}, {8, 9, 10, 11}};
constexpr int64_t kPad = 31;

Rollout rollout(Models& m, bool with_critic = true, double temperature = 1.0) {
  return build_rollout(m.get(with_critic), kPrompts, kResponses, kPad, temperature, Device::cpu());
}

TEST(PpoStageTest, RolloutLayoutMasksAndTheRewardModelScoreAtTheLastToken) {
  Models m(/*ref_seed=*/1);  // reference == actor
  Rollout r = rollout(m);
  ASSERT_EQ(r.rows, 2);
  ASSERT_EQ(r.T, 6);  // longest prompt + response: 2 + 4
  const std::vector<int64_t> ids = {1, 2, 3, 6, 7, kPad, 4, 5, 8, 9, 10, 11};
  const std::vector<int64_t> targets = {-100, -100, 6, 7, -100, -100, -100, 8, 9, 10, 11, -100};
  EXPECT_EQ(r.ids, ids);
  EXPECT_EQ(r.targets, targets);
  for (size_t i = 0; i < targets.size(); ++i)
    EXPECT_EQ(r.mask[i], targets[i] == -100 ? 0.f : 1.f);
  EXPECT_EQ(r.loss_mask, r.mask);
  EXPECT_EQ(r.resp_len, (std::vector<double>{2, 4}));
  EXPECT_EQ(r.values.size(), 12u);
  EXPECT_TRUE(rollout(m, /*with_critic=*/false).values.empty());
  // Identical actor and reference: KL exactly 0.
  EXPECT_EQ(r.logp, r.ref_logp);
  EXPECT_EQ(r.kl, (std::vector<double>{0.0, 0.0}));
  // The score is read at each row's last token (position 4 of row 0, 5 of row 1); padding after
  // the sequence does not change it.
  std::vector<double> s = reward_model_scores(*m.reward, m.grid, r, Device::cpu());
  Tensor full = Tensor::from_vector<int64_t>({1, 2, 3, 6, 7}, {1, 5});
  EXPECT_NEAR(s[0], m.reward->score(full, Tensor::from_vector<int64_t>({4}, {1})).item(), 1e-5);
  Tensor full1 = Tensor::from_vector<int64_t>({4, 5, 8, 9, 10, 11}, {1, 6});
  EXPECT_NEAR(s[1], m.reward->score(full1, Tensor::from_vector<int64_t>({5}, {1})).item(), 1e-5);
}

TEST(PpoStageTest, LogProbsAlignWithResponseTokensAndTheKlIsTheirSum) {
  Models m(/*ref_seed=*/7);
  const double temp = 2.0;
  Rollout r = rollout(m, true, temp);
  // Row 1 recomputed alone: log softmax(logits / temp) at the response tokens.
  Tensor ids = Tensor::from_vector<int64_t>({4, 5, 8, 9, 10, 11}, {1, 6});
  Tensor tg = Tensor::from_vector<int64_t>({-100, 8, 9, 10, 11, -100}, {1, 6});
  NoGradGuard g;
  std::vector<float> lp =
      token_logprobs(m.actor->forward(ids) * (1.0 / temp), tg).to_vector<float>();
  std::vector<float> rp =
      token_logprobs(m.reference->forward(ids) * (1.0 / temp), tg).to_vector<float>();
  double kl = 0.0;
  for (int64_t t = 0; t < 6; ++t) {
    const size_t i = size_t(6 + t);
    EXPECT_NEAR(r.logp[i], lp[size_t(t)], 1e-5) << t;  // f32 forwards over other batch shapes
    EXPECT_NEAR(r.ref_logp[i], rp[size_t(t)], 1e-5) << t;
    if (r.mask[i] != 0.f) kl += double(r.logp[i]) - double(r.ref_logp[i]);
  }
  EXPECT_NEAR(r.kl[1], kl, 1e-9);  // the same f32 values summed in another order
  EXPECT_NE(r.kl[1], 0.0);
}

TEST(PpoStageTest, LogProbsCoverOnlyTheSampledVocabulary) {
  Models m(/*ref_seed=*/7);
  const int64_t vocab = 28;  // ids 28..31 are padding rows that sampling never draws
  const std::vector<std::vector<int64_t>> responses = {{6, 7}, {8, 9, 10, 27}};
  Rollout r = build_rollout(m.get(), kPrompts, responses, 27, 1.0, Device::cpu(), vocab);
  Tensor ids = Tensor::from_vector<int64_t>({4, 5, 8, 9, 10, 27}, {1, 6});
  Tensor tg = Tensor::from_vector<int64_t>({-100, 8, 9, 10, 27, -100}, {1, 6});
  NoGradGuard g;
  std::vector<float> lp =
      token_logprobs(m.actor->forward(ids).narrow(2, 0, vocab), tg).to_vector<float>();
  std::vector<float> full = token_logprobs(m.actor->forward(ids), tg).to_vector<float>();
  for (int64_t t = 1; t < 5; ++t) {
    EXPECT_NEAR(r.logp[size_t(6 + t)], lp[size_t(t)], 1e-5) << t;  // f32, other batch shape
    EXPECT_GT(r.logp[size_t(6 + t)], full[size_t(t)]) << t;  // the padding mass is left out
  }
}

// The engine's log-probs of its own draws against the training forward's (build_rollout) for
// the same tokens: rounding apart when the engine samples the training distribution; top-k
// sampling renormalises over 2 of 28 tokens, which the gap shows as -log(their mass) per token.
TEST(PpoStageTest, RolloutTrainingLogprobGapIsRoundingUnlessTopKChangesTheDistribution) {
  Models m(/*ref_seed=*/7);
  models::SamplingOptions o;
  o.max_new_tokens = 5;
  o.temperature = 0.9;
  o.vocab_size = 28;
  o.eos_id = kPad;
  std::vector<models::GenerationRequest> reqs;
  std::vector<int64_t> prompt_len;
  for (const auto& p : kPrompts) {
    reqs.push_back({std::vector<int64_t>(p.begin(), p.end()), 2, 5, 0, 0});
    prompt_len.insert(prompt_len.end(), 2, int64_t(p.size()));
  }
  auto gap_of = [&](const models::SamplingOptions& opts) {
    models::SampleLogprobs lp;
    const auto out = models::generate_batch(*m.actor, reqs, opts, &lp);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<std::vector<int64_t>> responses;
    std::vector<std::vector<double>> engine;
    for (size_t i = 0; i < out.size(); ++i)
      for (size_t j = 0; j < out[i].size(); ++j) {
        prompts.push_back(kPrompts[i]);
        responses.push_back(out[i][j]);
        engine.push_back(lp[i][j]);
      }
    const Rollout r = build_rollout(m.get(), prompts, responses, kPad, opts.temperature,
                                    Device::cpu(), opts.vocab_size);
    return logprob_gap(r, prompt_len, engine);
  };
  const LogprobGap same = gap_of(o);
  EXPECT_EQ(same.count, 20.0);  // 4 samples x 5 tokens: EOS (31) lies beyond vocab_size 28
  EXPECT_LT(same.max, 1e-5);    // f32 cached vs full forward (GenerateTest: observed 8e-7)
  o.top_k = 2;
  const LogprobGap topk = gap_of(o);
  EXPECT_GT(topk.sum / topk.count, 1.0);  // tiny random model: 2 of 28 tokens hold far below e^-1
  EXPECT_GE(topk.max, topk.sum / topk.count);
}

TEST(PpoStageTest, LogprobGapPairsEachEngineLogprobWithItsResponsePosition) {
  Rollout r;
  r.rows = 2;
  r.T = 4;
  r.logp = {0.f, -1.f, -2.f, 0.f,    // row 0: prompt of 2 tokens, response tokens at t = 1, 2
            -0.5f, 0.f, 0.f, 0.f};   // row 1: prompt of 1 token, one response token at t = 0
  const LogprobGap g = logprob_gap(r, {2, 1}, {{-1.25, -2.0}, {-0.25}});
  EXPECT_EQ(g.count, 3.0);
  EXPECT_DOUBLE_EQ(g.sum, 0.5);  // 0.25 + 0 + 0.25, exact in binary
  EXPECT_DOUBLE_EQ(g.max, 0.25);
  EXPECT_THROW(logprob_gap(r, {4, 1}, {{-1.0, -2.0}, {-0.25}}), ValueError);  // past T
}

TEST(PpoStageTest, ShapingPenalisesOrMasksResponsesWithoutEosAndOverlongOnes) {
  // Row 1 is cut without EOS (kPad); rows 2-3 form a group with equal raw scores.
  const std::vector<std::vector<int64_t>> responses = {
      {6, kPad}, {8, 9, 10, 11}, {5, 5, kPad}, {5, kPad}};
  const std::vector<double> raw = {1.0, 2.0, 0.5, 0.5};
  ShapingOptions o{.eos_id = kPad, .max_new_tokens = 4, .mask_truncated = false,
                   .missing_eos_penalty = 5.0};
  ShapedScores s = shape_scores(raw, responses, o);
  EXPECT_EQ(s.scores, (std::vector<double>{1.0, -3.0, 0.5, 0.5}));
  EXPECT_EQ(s.keep, (std::vector<bool>{true, true, true, true}));
  EXPECT_EQ(s.no_eos, 1);
  // The default: no penalty, the cut response leaves the loss.
  s = shape_scores(raw, responses, {.eos_id = kPad, .max_new_tokens = 4});
  EXPECT_EQ(s.scores, raw);
  EXPECT_EQ(s.keep, (std::vector<bool>{true, false, true, true}));
  // DAPO overlong shaping with a buffer of 2 of 4 tokens: lengths 2, 4, 3, 2 lose 0, 1, 0.5, 0.
  s = shape_scores(raw, responses, {.eos_id = kPad, .max_new_tokens = 4, .overlong_buffer = 2});
  EXPECT_EQ(s.scores, (std::vector<double>{1.0, 1.0, 0.0, 0.5}));
  // Groups of 2: the second group's shaped scores (0.5, 0.5) are equal; dropped when asked.
  s = shape_scores(raw, responses, {.eos_id = kPad, .max_new_tokens = 4, .group_size = 2});
  EXPECT_EQ(s.equal_groups, 1);
  EXPECT_EQ(s.keep, (std::vector<bool>{true, false, true, true}));
  s = shape_scores(raw, responses,
                   {.eos_id = kPad, .max_new_tokens = 4, .group_size = 2,
                    .drop_equal_groups = true});
  EXPECT_EQ(s.keep, (std::vector<bool>{true, false, false, false}));
}

TEST(PpoStageTest, PpoAdvantagesAreWhitenedGaeAlsoAcrossSimulatedRanks) {
  Models m(7);
  Rollout r = rollout(m);
  r.scores = {0.75, -1.5};
  Rollout twin = r;
  const AdvantageOptions o{.algorithm = RlAlgorithm::PPO, .kl_coef = 0.1, .gamma = 0.99,
                           .lam = 0.95};
  compute_advantages(r, o, nullptr);
  Tensor mask = Tensor::from_vector<float>(r.mask, {2, 6});
  Tensor rewards =
      compute_rewards(Tensor::from_vector<float>({0.75f, -1.5f}, {2}),
                      Tensor::from_vector<float>(r.logp, {2, 6}),
                      Tensor::from_vector<float>(r.ref_logp, {2, 6}), mask, 0.1);
  GaeOutput g = gae(rewards, Tensor::from_vector<float>(r.values, {2, 6}), mask, 0.99, 0.95);
  std::vector<float> want = masked_whiten(g.advantages, mask).to_vector<float>();
  std::vector<float> ret = g.returns.to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(r.advantages[i], want[i], 1e-5) << i;  // f64 host sums vs f32 masked_whiten
    EXPECT_EQ(r.returns[i], ret[i]) << i;
  }
  // A second rank holding the same rows doubles every sum: the result is the whitening of the
  // 4-row batch (each row twice), whose unbiased variance differs by Bessel's correction.
  compute_advantages(twin, o, [](std::vector<double>& v) {
    for (double& x : v) x *= 2.0;
  });
  std::vector<float> a2 = g.advantages.to_vector<float>(), m2 = r.mask;
  a2.insert(a2.end(), a2.begin(), a2.end());
  m2.insert(m2.end(), m2.begin(), m2.end());
  std::vector<float> want2 = masked_whiten(Tensor::from_vector<float>(a2, {4, 6}),
                                           Tensor::from_vector<float>(m2, {4, 6}))
                                 .to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(twin.advantages[i], want2[i], 1e-5) << i;  // as above
}

// 4 rows in 2 groups of 2 (each prompt answered twice).
Rollout grouped(Models& m) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 2}, {1, 2}, {4, 5}, {4, 5}};
  const std::vector<std::vector<int64_t>> responses = {{6, 7}, {8}, {9, 10, 11}, {12, 13}};
  Rollout r = build_rollout(m.get(false), prompts, responses, kPad, 1.0, Device::cpu());
  r.scores = {1.0, 0.0, 0.5, 2.0};
  return r;
}

TEST(PpoStageTest, GroupAdvantagesOfGrpoAndRlooOnEveryResponseToken) {
  Models m(7);
  Rollout r = grouped(m);
  exclude_rows(r, {true, true, false, true});
  compute_advantages(r, {.algorithm = RlAlgorithm::GRPO, .group_size = 2}, nullptr);
  // GRPO over (1, 0) and (0.5, 2); the excluded row 2 still counts in its group's statistics.
  std::vector<double> a =
      grpo_advantages(Tensor::from_vector<double>(r.scores, {4}), {.group_size = 2})
          .to_vector<double>();
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t t = 0; t < r.T; ++t) {
      const size_t i = size_t(b * r.T + t);
      const double want = r.loss_mask[i] * a[size_t(b)];
      EXPECT_NEAR(r.advantages[i], want, 1e-6) << b << "," << t;  // f32 of an f64 value
      if (b == 2) {
        EXPECT_EQ(r.advantages[i], 0.0f);
      }
    }
  // RLOO with the KL in the score: r_i - kl_coef * KL_i minus the group's other sample.
  compute_advantages(r, {.algorithm = RlAlgorithm::RLOO, .kl_coef = 0.5, .group_size = 2},
                     nullptr);
  std::vector<double> s(4);
  for (size_t b = 0; b < 4; ++b) s[b] = r.scores[b] - 0.5 * r.kl[b];
  const std::vector<double> want = {s[0] - s[1], s[1] - s[0], s[2] - s[3], s[3] - s[2]};
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t t = 0; t < r.T; ++t) {
      const size_t i = size_t(b * r.T + t);
      EXPECT_NEAR(r.advantages[i], r.loss_mask[i] * want[size_t(b)], 1e-6);  // as above
    }
}

TEST(PpoStageTest, ReinforcePpAdvantagesAreGloballyWhitenedReturns) {
  Models m(7);
  Rollout r = grouped(m);
  Rollout twin = r;
  const AdvantageOptions o{.algorithm = RlAlgorithm::REINFORCE_PP, .kl_coef = 0.2};
  compute_advantages(r, o, nullptr);
  Tensor mask = Tensor::from_vector<float>(r.mask, {4, r.T});
  ReinforcePpOutput p = reinforce_pp_advantages(
      Tensor::from_vector<float>({1.0f, 0.0f, 0.5f, 2.0f}, {4}),
      Tensor::from_vector<float>(r.logp, {4, r.T}), Tensor::from_vector<float>(r.ref_logp, {4, r.T}),
      mask, 0.2);
  std::vector<float> want = p.advantages.to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(r.advantages[i], want[i], 1e-5) << i;  // f64 host sums vs f32 masked_whiten
  // Twice the rows (a simulated second rank): the whitening of the doubled batch.
  compute_advantages(twin, o, [](std::vector<double>& v) {
    for (double& x : v) x *= 2.0;
  });
  std::vector<float> g2 = p.returns.to_vector<float>(), m2 = r.mask;
  g2.insert(g2.end(), g2.begin(), g2.end());
  m2.insert(m2.end(), m2.begin(), m2.end());
  std::vector<float> want2 = masked_whiten(Tensor::from_vector<float>(g2, {8, r.T}),
                                           Tensor::from_vector<float>(m2, {8, r.T}))
                                 .to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(twin.advantages[i], want2[i], 1e-5) << i;  // as above
}

// Learners at lr 0 (no weight decay either): every mini-batch is an optimizer step, but the
// weights never change, so every pass sees ratio 1.
config::RunConfig frozen_config() {
  config::RunConfig cfg = config::parse_text("optimizer { lr: 0 weight_decay: 0 grad_clip: 0 }");
  config::apply_defaults(cfg, 1);
  return cfg;
}

TEST(PpoStageTest, PpoUpdateStepsBothLearnersPerMiniBatch) {
  Models m(7);
  Rollout r = rollout(m);
  r.scores = {0.75, -1.5};
  compute_advantages(r, {.algorithm = RlAlgorithm::PPO, .kl_coef = 0.1}, nullptr);
  const config::RunConfig cfg = frozen_config();
  std::vector<float> head_before = m.critic->parameter("value_head.weight").to_vector<float>();
  train::Learner actor(std::move(m.actor), cfg, m.grid);
  train::Learner critic(std::move(m.critic), cfg, m.grid);
  UpdateOptions o;
  o.epochs = 2;
  o.mini_batches = 2;
  o.lr = 0.0;
  UpdateStats st = policy_update(actor, &critic, r, o, /*step=*/1, Device::cpu());
  // Each update took gradients (AdamW's step counts advanced once per mini-batch) and left none.
  EXPECT_EQ(actor.optimizer().step_count(), 4);  // epochs x mini_batches
  EXPECT_EQ(critic.optimizer().step_count(), 4);
  for (const Tensor& p : actor.model().parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_EQ(critic.model().parameter("value_head.weight").to_vector<float>(), head_before);
  EXPECT_GT(st.grad_norm, 0.0);
  // Ratio 1 everywhere: no clipping, ~no approx KL, and the policy loss is minus the token mean
  // of the whitened advantages.
  EXPECT_EQ(st.clip_fraction, 0.0);
  // logp of a row recomputed in a 1-row mini-batch differs from the 2-row rollout by f32
  // rounding (~1e-7), and approx_kl is half its square.
  EXPECT_NEAR(st.approx_kl, 0.0, 1e-12);
  double adv = 0.0, n = 0.0;
  for (size_t i = 0; i < r.mask.size(); ++i) {
    adv += r.mask[i] * r.advantages[i];
    n += r.mask[i];
  }
  EXPECT_NEAR(st.policy_loss, -adv / n, 1e-6);  // f32 means of 6 values
  EXPECT_GT(st.value_loss, 0.0);
  EXPECT_GT(st.entropy, 0.0);
  EXPECT_LE(st.entropy, std::log(32.0) + 1e-6);  // at most log V
}

TEST(PpoStageTest, CriticFreeUpdateAddsTheKlTermAndSkipsMiniBatchesOutsideTheLoss) {
  Models m(/*ref_seed=*/1);  // reference == actor: every KL estimate is 0
  Rollout r = grouped(m);
  compute_advantages(r, {.algorithm = RlAlgorithm::GRPO, .group_size = 2}, nullptr);
  train::Learner actor(std::move(m.actor), frozen_config(), m.grid);
  UpdateOptions o;
  o.epochs = 1;
  o.mini_batches = 2;
  o.lr = 0.0;
  o.kl_coef = 0.5;
  o.pg.aggregation = LossAggregation::SEQ_MEAN_TOKEN_MEAN;
  UpdateStats st = policy_update(actor, nullptr, r, o, 1, Device::cpu());
  EXPECT_EQ(actor.optimizer().step_count(), 2);
  EXPECT_NEAR(st.kl_loss, 0.0, 1e-6);  // K3 of log-ratios ~1e-7 (f32 recomputation)
  EXPECT_EQ(st.value_loss, 0.0);
  // Sequence mean of token means at ratio 1: minus the mean of each row's advantage (GRPO's are
  // constant along a row), weighted by rows.
  std::vector<double> a =
      grpo_advantages(Tensor::from_vector<double>(r.scores, {4}), {.group_size = 2})
          .to_vector<double>();
  EXPECT_NEAR(st.policy_loss, -(a[0] + a[1] + a[2] + a[3]) / 4, 1e-6);  // f32 sums of 4 terms
  // Rows 0 and 2 (mini-batch 0) leave the loss: only mini-batch 1 takes a step.
  exclude_rows(r, {false, true, false, true});
  UpdateStats st2 = policy_update(actor, nullptr, r, o, 2, Device::cpu());
  EXPECT_EQ(actor.optimizer().step_count(), 3);
  EXPECT_NEAR(st2.policy_loss, -(a[1] + a[3]) / 2, 1e-6);  // as above
}

}  // namespace
}  // namespace loom::rlhf

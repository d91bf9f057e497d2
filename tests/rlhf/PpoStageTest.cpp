// Bookkeeping of one PPO iteration (rlhf/PpoStage.h) on tiny random models: rollout layout
// (ids, targets, masks, padding), log-probs aligned with the response tokens, the KL penalty's
// sign and the score placed at the last response token, GAE + whitening (also under a simulated
// second rank) and the mini-batch updates of the actor's and the critic's learners.
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/random/Generator.h"
#include "rlhf/Losses.h"
#include "rlhf/Ppo.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "parallel/comm/FakeCommunicator.h"
#include "rlhf/PpoStage.h"

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
  PpoModels get() { return {*actor, *reference, *critic, *reward, grid}; }
  ProcessGrid grid;
  std::unique_ptr<models::GPT> actor, reference;
  std::unique_ptr<models::RewardModel> critic, reward;
};

const std::vector<std::vector<int32_t>> kPrompts = {{1, 2, 3}, {4, 5}};
const std::vector<std::vector<int64_t>> kResponses = {{6, 7}, {8, 9, 10, 11}};
constexpr int64_t kPad = 31;

TEST(PpoStageTest, RolloutLayoutMasksAndScoreAtTheLastToken) {
  Models m(/*ref_seed=*/1);  // reference == actor
  PpoRollout r = score_rollout(m.get(), kPrompts, kResponses, kPad, 1.0, 0.1, Device::cpu());
  ASSERT_EQ(r.rows, 2);
  ASSERT_EQ(r.T, 6);  // longest prompt + response: 2 + 4
  const std::vector<int64_t> ids = {1, 2, 3, 6, 7, kPad, 4, 5, 8, 9, 10, 11};
  const std::vector<int64_t> targets = {-100, -100, 6, 7, -100, -100, -100, 8, 9, 10, 11, -100};
  EXPECT_EQ(r.ids, ids);
  EXPECT_EQ(r.targets, targets);
  for (size_t i = 0; i < targets.size(); ++i)
    EXPECT_EQ(r.mask[i], targets[i] == -100 ? 0.f : 1.f);
  EXPECT_EQ(r.resp_len, (std::vector<double>{2, 4}));
  // Identical actor and reference: KL exactly 0, so the only reward is the score at the last
  // response token (position 3 of row 0, 4 of row 1).
  Tensor full = Tensor::from_vector<int64_t>({1, 2, 3, 6, 7}, {1, 5});
  double s0 = m.reward->score(full, Tensor::from_vector<int64_t>({4}, {1})).item();
  EXPECT_NEAR(r.scores[0], s0, 1e-5);  // padding after the sequence does not change the score
  for (size_t i = 0; i < r.rewards.size(); ++i) {
    const float want = i == 3 ? float(r.scores[0]) : i == 10 ? float(r.scores[1]) : 0.f;
    EXPECT_EQ(r.rewards[i], want) << i;
    EXPECT_EQ(r.logp[i], r.ref_logp[i]) << i;
  }
  EXPECT_EQ(r.kl, (std::vector<double>{0.0, 0.0}));
}

TEST(PpoStageTest, LogProbsAlignWithResponseTokensAndKlPenaltyHasTheRightSign) {
  Models m(/*ref_seed=*/7);
  const double beta = 0.1, temp = 2.0;
  PpoRollout r = score_rollout(m.get(), kPrompts, kResponses, kPad, temp, beta, Device::cpu());
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
    if (r.mask[i] == 0.f) continue;
    const double penalty = -beta * (double(r.logp[i]) - double(r.ref_logp[i]));
    const double want = t == 4 ? penalty + r.scores[1] : penalty;
    EXPECT_NEAR(r.rewards[i], want, 1e-6) << t;  // one f32 rounding of the sum
    kl += double(r.logp[i]) - double(r.ref_logp[i]);
  }
  EXPECT_NEAR(r.kl[1], kl, 1e-9);
  EXPECT_NE(r.kl[1], 0.0);
}

TEST(PpoStageTest, MissingEosPenaltyLowersOnlyTheScoresOfResponsesCutWithoutEos) {
  Models m(/*ref_seed=*/1);
  const std::vector<std::vector<int64_t>> responses = {{6, kPad}, {8, 9, 10, 11}};  // row 1 cut
  PpoRollout plain = score_rollout(m.get(), kPrompts, responses, kPad, 1.0, 0.1, Device::cpu());
  PpoRollout pen =
      score_rollout(m.get(), kPrompts, responses, kPad, 1.0, 0.1, Device::cpu(), 0, 5.0);
  EXPECT_EQ(pen.scores[0], plain.scores[0]);
  EXPECT_NEAR(pen.scores[1], plain.scores[1] - 5.0, 1e-5);  // one f32 subtraction
  // The score (penalty included) is the reward at the last response token (position 4, row 1).
  EXPECT_EQ(pen.rewards[size_t(plain.T + 4)], float(pen.scores[1]));
}

TEST(PpoStageTest, LogProbsCoverOnlyTheSampledVocabulary) {
  Models m(/*ref_seed=*/7);
  const int64_t vocab = 28;  // ids 28..31 are padding rows that sampling never draws
  const std::vector<std::vector<int64_t>> responses = {{6, 7}, {8, 9, 10, 27}};
  PpoRollout r =
      score_rollout(m.get(), kPrompts, responses, 27, 1.0, 0.1, Device::cpu(), vocab);
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

TEST(PpoStageTest, AdvantagesAreWhitenedGaeAlsoAcrossSimulatedRanks) {
  Models m(7);
  PpoRollout r = score_rollout(m.get(), kPrompts, kResponses, kPad, 1.0, 0.1, Device::cpu());
  PpoRollout twin = r;
  compute_advantages(r, 0.99, 0.95, nullptr);
  Tensor mask = Tensor::from_vector<float>(r.mask, {2, 6});
  GaeOutput g = gae(Tensor::from_vector<float>(r.rewards, {2, 6}),
                    Tensor::from_vector<float>(r.values, {2, 6}), mask, 0.99, 0.95);
  std::vector<float> want = masked_whiten(g.advantages, mask).to_vector<float>();
  std::vector<float> ret = g.returns.to_vector<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(r.advantages[i], want[i], 1e-5) << i;  // f64 host sums vs f32 masked_whiten
    EXPECT_EQ(r.returns[i], ret[i]) << i;
  }
  // A second rank holding the same rows doubles every sum: the result is the whitening of the
  // 4-row batch (each row twice), whose unbiased variance differs by Bessel's correction.
  compute_advantages(twin, 0.99, 0.95, [](std::vector<double>& v) {
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

TEST(PpoStageTest, UpdateStepsBothLearnersPerMiniBatch) {
  Models m(7);
  PpoRollout r = score_rollout(m.get(), kPrompts, kResponses, kPad, 1.0, 0.1, Device::cpu());
  compute_advantages(r, 1.0, 0.95, nullptr);
  // Learners at lr 0 (no weight decay either): every mini-batch is an optimizer step of both, but
  // the weights never change, so every pass sees ratio 1.
  config::RunConfig cfg = config::parse_text("optimizer { lr: 0 weight_decay: 0 grad_clip: 0 }");
  config::apply_defaults(cfg, 1);
  std::vector<float> head_before = m.critic->parameter("value_head.weight").to_vector<float>();
  train::Learner actor(std::move(m.actor), cfg, m.grid);
  train::Learner critic(std::move(m.critic), cfg, m.grid);
  PpoUpdateOptions o;
  o.epochs = 2;
  o.mini_batches = 2;
  o.lr = 0.0;
  PpoUpdateStats st = ppo_update(actor, critic, r, o, /*step=*/1, Device::cpu());
  // Each update took gradients (AdamW's step counts advanced once per mini-batch) and left none.
  EXPECT_EQ(actor.optimizer().step_count(), 4);  // epochs x mini_batches
  EXPECT_EQ(critic.optimizer().step_count(), 4);
  for (const Tensor& p : actor.model().parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_EQ(critic.model().parameter("value_head.weight").to_vector<float>(), head_before);
  EXPECT_GT(st.grad_norm, 0.0);
  // Weights never change, so the ratio is 1 everywhere: no clipping, ~no approx KL, and the policy
  // loss is minus the token mean of the whitened advantages.
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

}  // namespace
}  // namespace loom::rlhf

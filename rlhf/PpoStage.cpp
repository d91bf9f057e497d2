// The RL stage (see PpoStage.h). Every model pass runs in eval mode (dropout off, as usual for
// PPO: the first mini-batch then has ratio exactly 1). Generation decodes every prompt's
// group_size samples in one batch, each prompt seeded from (seed, step, its global row), so a
// row's samples depend neither on the batch nor on how it is split over data-parallel ranks.
#include "rlhf/PpoStage.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "core/util/Logging.h"
#include "rlhf/JsonlReader.h"

namespace loom::rlhf {

using config::PpoConfig;
using config::RunConfig;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

RlAlgorithm algorithm_of(PpoConfig::Algorithm a) {
  switch (a) {
    case PpoConfig::GRPO: return RlAlgorithm::GRPO;
    case PpoConfig::RLOO: return RlAlgorithm::RLOO;
    case PpoConfig::REINFORCE_PP: return RlAlgorithm::REINFORCE_PP;
    default: return RlAlgorithm::PPO;
  }
}

KlEstimator estimator_of(PpoConfig::KlEstimator e) {
  return e == PpoConfig::K1 ? KlEstimator::K1 : e == PpoConfig::K2 ? KlEstimator::K2
                                                                   : KlEstimator::K3;
}

LossAggregation aggregation_of(PpoConfig::LossAggregation a) {
  switch (a) {
    case PpoConfig::SEQ_MEAN_TOKEN_MEAN: return LossAggregation::SEQ_MEAN_TOKEN_MEAN;
    case PpoConfig::SEQ_MEAN_TOKEN_SUM_NORM: return LossAggregation::SEQ_MEAN_TOKEN_SUM_NORM;
    default: return LossAggregation::TOKEN_MEAN;
  }
}

}  // namespace

struct PpoStage::Samples {
  std::vector<size_t> prompt;                      // per row: index into prompts_
  std::vector<std::vector<int32_t>> prompt_ids;    // per row
  std::vector<std::vector<int64_t>> responses;     // per row, EOS included when drawn
  std::vector<std::vector<double>> logprobs;       // per row: the engine's, per response token
};

// ---- construction ---------------------------------------------------------------------------

PpoStage::PpoStage(train::StageContext& ctx, train::Learner& policy) : ExampleStage(ctx) {
  const RunConfig& cfg = ctx.cfg();
  const PpoConfig& p = cfg.ppo();
  tok_ = &stage_tokenizer(ctx);
  pad_id_ = require_eot(*tok_);
  vocab_ = tok_->vocab_size();
  const models::GPTConfig& mc = policy.model().config();
  load_prompts(cfg, mc.block_size);
  set_options(cfg);
  reference_ = ctx.make_model(mc, false, cfg.init_from());
  rewards_ = std::make_unique<RolloutRewards>(p, ctx.grid());
  if (rewards_->uses_reward_model())
    reward_model_ = std::make_unique<RewardScorer>(ctx, *tok_, mc, p.reward_model());
  if (p.algorithm() == PpoConfig::PPO) critic_ = make_critic(ctx, *tok_, mc, p.critic_init());
  kl_ = make_kl_controller(p.adaptive_kl(), p.kl_coef(), p.kl_target(), double(p.kl_horizon()));
  desc_ = loom::detail::str_cat("ppo (", PpoConfig::Algorithm_Name(p.algorithm()), ") ",
                                p.prompts_path(), ": ", prompts_.size(), " prompts x ", group_,
                                " samples; reward ", rewards_->describe());
  if (reward_model_) desc_ += "; reward model " + reward_model_->describe();
  if (critic_)
    desc_ += loom::detail::str_cat("; critic n_layer=", critic_->model().config().n_layer,
                                   " n_embd=", critic_->model().config().n_embd);
}

PpoStage::~PpoStage() = default;

void PpoStage::load_prompts(const RunConfig& cfg, int64_t block) {
  const ChatTemplate tmpl = template_named(cfg.sft().template_());
  detail::read_jsonl(
      "ppo", cfg.ppo().prompts_path(), false,
      [&](const nlohmann::json& j) {
        const std::string text = detail::get_string(j, "prompt");
        if (text.empty()) throw detail::LineError{"expected a non-empty \"prompt\"", "empty"};
        std::vector<int32_t> ids = encode_prompt(*tok_, tmpl, text);
        if (int64_t(ids.size()) >= block)
          throw detail::LineError{
              loom::detail::str_cat("prompt of ", ids.size(), " tokens leaves no room for a ",
                                    "response in model.block_size=", block),
              "too_long"};
        prompts_.push_back(std::move(ids));
        records_.push_back(reward_sample_from_record(j.dump()));
      },
      [](const std::string&) {});
}

void PpoStage::set_options(const RunConfig& cfg) {
  const PpoConfig& p = cfg.ppo();
  const auto& ro = p.rollout();
  batch_ = ro.batch_size();
  group_ = p.group_size();
  sample_interval_ = p.sample_interval();
  shaping_ = {pad_id_,           ro.max_new_tokens(),
              p.truncated_responses() == PpoConfig::MASK,
              p.missing_eos_penalty(), p.overlong_buffer(),
              p.overlong_penalty_factor(), group_,
              p.drop_equal_reward_groups()};
  adv_ = {algorithm_of(p.algorithm()), 0.0, p.gamma(), p.lam(), group_, p.scale_by_std()};
  upd_.pg = {.clip_low = p.clip(),
             .clip_high = p.clip_high(),
             .aggregation = aggregation_of(p.loss_aggregation()),
             .norm_constant = double(ro.max_new_tokens())};
  upd_.kl_estimator = estimator_of(p.kl_estimator());
  upd_.value_clip = p.value_clip();
  upd_.temperature = ro.temperature();
  upd_.epochs = p.epochs();
  upd_.mini_batches = p.mini_batches();
  upd_.vocab = vocab_;
  sampling_.max_new_tokens = ro.max_new_tokens();
  sampling_.temperature = ro.temperature();
  sampling_.top_k = ro.top_k();
  sampling_.top_p = ro.top_p();
  sampling_.eos_id = pad_id_;
  sampling_.vocab_size = vocab_;
  sampling_.validate();
}

// ---- checkpoint state -----------------------------------------------------------------------

std::vector<std::pair<std::string, train::Learner*>> PpoStage::learners() {
  if (!critic_) return {};
  return {{"critic", critic_.get()}};
}

std::string PpoStage::state() const {
  nlohmann::json j = nlohmann::json::parse(ExampleStage::state());
  j["ppo"] = {{"kl_coef", kl_->value()}};
  return j.dump();
}

void PpoStage::set_state(const std::string& trainer_state_json, const std::string& source) {
  ExampleStage::set_state(trainer_state_json, source);
  const nlohmann::json state = nlohmann::json::parse(trainer_state_json);
  LOOM_CHECK_T(CheckpointError, state.contains("ppo"), "checkpoint ", source,
               ": has no PPO state (KL coefficient); expected a checkpoint of a PPO run");
  kl_->set_value(state["ppo"].value("kl_coef", kl_->value()));
}

// ---- one iteration --------------------------------------------------------------------------

PpoStage::Samples PpoStage::sample(int64_t step, models::GPT& actor) {
  Samples s;
  const std::vector<size_t> idx = next_indices(prompts_.size(), batch_);
  std::vector<models::GenerationRequest> requests;
  for (size_t i = 0; i < idx.size(); ++i) {
    const uint64_t row = uint64_t(ctx_.dp_rank()) * uint64_t(batch_) + i;  // global prompt row
    const std::vector<int32_t>& ids = prompts_[idx[i]];
    requests.push_back({std::vector<int64_t>(ids.begin(), ids.end()), group_,
                        splitmix64(ctx_.cfg().seed() ^
                                   splitmix64(uint64_t(step) * 0x100000000ull + row))});
  }
  // Every prompt's group_size samples in one batch; each draw keyed by its prompt row's seed.
  models::SampleLogprobs lp;
  auto out = models::generate_batch(actor, requests, sampling_, &lp);
  for (size_t i = 0; i < idx.size(); ++i) {
    for (size_t j = 0; j < out[i].size(); ++j) {
      LOOM_INTERNAL_ASSERT(!out[i][j].empty());
      s.prompt.push_back(idx[i]);
      s.prompt_ids.push_back(prompts_[idx[i]]);
      s.responses.push_back(std::move(out[i][j]));
      s.logprobs.push_back(std::move(lp[i][j]));
    }
  }
  return s;
}

namespace {

// The text of a response: its tokens without the final EOS.
std::string response_text(const data::Tokenizer& tok, const std::vector<int64_t>& r,
                          int64_t eos) {
  std::vector<int32_t> ids(r.begin(), r.end());
  if (!ids.empty() && ids.back() == eos) ids.pop_back();
  return tok.decode(ids);
}

}  // namespace

WeightedScores PpoStage::score(const Samples& s, const Rollout& r) {
  std::vector<double> rm;
  if (reward_model_) {
    std::vector<SampleText> texts;
    if (reward_model_->retokenizes())
      for (size_t i = 0; i < s.responses.size(); ++i)
        texts.push_back({records_[s.prompt[i]].prompt,
                         response_text(*tok_, s.responses[i], pad_id_),
                         s.responses[i].back() == pad_id_});
    rm = reward_model_->score(r, texts, ctx_.grid(), ctx_.device());
  }
  return rewards_->score(
      [&] {
        std::vector<RewardSample> out;
        for (size_t i = 0; i < s.responses.size(); ++i) {
          RewardSample x = records_[s.prompt[i]];
          x.response = response_text(*tok_, s.responses[i], pad_id_);
          x.response_tokens = int64_t(s.responses[i].size());
          if (!rm.empty()) x.model_score = rm[i];
          out.push_back(std::move(x));
        }
        return out;
      },
      s.responses.size());
}

train::StepResult PpoStage::run_step(int64_t step, double lr, train::Learner& policy) {
  std::vector<Clock::time_point> t = {Clock::now()};
  models::GPT& actor = policy.model();
  models::GPT* rm = reward_model_ ? &reward_model_->model() : nullptr;
  for (models::GPT* m : {&actor, reference_.get(), rm, critic_ ? &critic_->model() : nullptr})
    if (m) m->eval();
  const Samples s = sample(step, actor);
  t.push_back(Clock::now());
  auto* critic = critic_ ? &dynamic_cast<models::RewardModel&>(critic_->model()) : nullptr;
  Rollout r = build_rollout({actor, *reference_, critic, ctx_.grid()}, s.prompt_ids, s.responses,
                            pad_id_, upd_.temperature, ctx_.device(), vocab_);
  t.push_back(Clock::now());
  const WeightedScores ws = score(s, r);
  const ShapedScores sh = shape_scores(ws.total, s.responses, shaping_);
  r.scores = sh.scores;
  exclude_rows(r, sh.keep);
  t.push_back(Clock::now());
  const double kl_coef = kl_->value();
  const bool kl_in_loss = adv_.algorithm == RlAlgorithm::GRPO;
  adv_.kl_coef = kl_in_loss ? 0.0 : kl_coef;
  compute_advantages(r, adv_, [&policy](std::vector<double>& v) { policy.dp_sum(v); });
  upd_.kl_coef = kl_in_loss ? kl_coef : 0.0;
  upd_.lr = lr;
  const UpdateStats st = policy_update(policy, critic_.get(), r, upd_, step, ctx_.device());
  t.push_back(Clock::now());

  Metrics m = iteration_metrics(step, s, r, ws, sh, policy);
  double generated = 0;  // response tokens this rank generated (EOS included)
  for (const std::vector<int64_t>& resp : s.responses) generated += double(resp.size());
  const double loss = st.policy_loss + st.value_loss + upd_.kl_coef * st.kl_loss;
  LOOM_CHECK_T(NonFiniteError, std::isfinite(loss), "train: RL loss is ", loss, " at step ", step,
               "; hint: lower optimizer.lr or ppo.clip");
  m.insert(m.end(), {{"kl_coef", kl_coef},
                     {"policy_loss", st.policy_loss},
                     {"clip_fraction", st.clip_fraction},
                     {"clip_high_fraction", st.clip_high_fraction},
                     {"approx_kl", st.approx_kl},
                     {"entropy", st.entropy},
                     {"gen_s", seconds(t[0], t[1])},
                     {"gen_tokens_per_s", generated / std::max(seconds(t[0], t[1]), 1e-9)},
                     {"forward_s", seconds(t[1], t[2])},
                     {"reward_s", seconds(t[2], t[3])},
                     {"train_s", seconds(t[3], t[4])}});
  if (critic_) m.insert(m.end(), {{"value_loss", st.value_loss},
                                  {"value_clip_fraction", st.value_clip_fraction}});
  if (kl_in_loss) m.emplace_back("kl_loss", st.kl_loss);
  if (sample_interval_ > 0 && step % sample_interval_ == 0) write_samples(step, s, ws, sh);
  return {loss, st.grad_norm, std::move(m)};
}

// Global (DP) means of the iteration's samples, the KL controller's update and the health check.
// Also the rollout / training log-prob gap over every rank's response tokens (mean and maximum of
// |engine - training|): the engine's draws and the loss's recomputed log-probs agree to rounding
// unless top-k / top-p changed the distribution the samples came from.
Metrics PpoStage::iteration_metrics(int64_t step, const Samples& s, const Rollout& r,
                                    const WeightedScores& ws, const ShapedScores& sh,
                                    train::Learner& policy) {
  std::vector<double> g = {0.0, 0.0, 0.0, 0.0};  // summed KL and the gap: on the last stage
  for (double k : r.kl) g[0] += k;
  if (policy.model().is_last()) {
    std::vector<int64_t> prompt_len;
    for (const auto& p : s.prompt_ids) prompt_len.push_back(int64_t(p.size()));
    const LogprobGap gap = logprob_gap(r, prompt_len, s.logprobs);
    g = {g[0], gap.sum, gap.count, gap.max};
  }
  policy.from_last_stage(g);
  std::vector<double> gap_max = {g[3]};
  const std::vector<double> gap = {g[1], g[2]};  // summed over ranks with the rest, at the end
  g.resize(1);
  std::vector<std::vector<int32_t>> resp;
  for (const auto& x : s.responses) resp.emplace_back(x.begin(), x.end());
  const ResponseStats rs = response_stats(resp, int32_t(pad_id_), sampling_.max_new_tokens);
  const double n = double(r.rows), groups = n / double(group_);
  double score = 0.0, kept = 0.0;
  for (size_t i = 0; i < sh.scores.size(); ++i) {
    score += sh.scores[i];
    kept += sh.keep[i] ? 1.0 : 0.0;
  }
  g.insert(g.end(), {score, rs.mean_length * n, rs.truncated_fraction * n, kept,
                     double(sh.equal_groups), n, groups});
  for (const auto& v : ws.values) {
    double sum = 0.0;
    for (double x : v) sum += x;
    g.push_back(sum);
  }
  g.insert(g.end(), gap.begin(), gap.end());
  policy.dp_sum(g);
  policy.dp_max(gap_max);
  const double N = g[6];
  Metrics m = {{"score_mean", g[1] / N},          {"kl", g[0] / N},
               {"response_length", g[2] / N},     {"truncated_fraction", g[3] / N},
               {"loss_sample_fraction", g[4] / N}};
  if (group_ >= 2) m.emplace_back("equal_reward_groups", g[5] / g[7]);
  for (size_t k = 0; k < ws.names.size(); ++k)
    m.emplace_back("reward/" + ws.names[k], g[8 + k] / N);
  const size_t gi = 8 + ws.values.size();
  m.insert(m.end(), {{"logp_gap_mean", g[gi] / std::max(g[gi + 1], 1.0)},
                     {"logp_gap_max", gap_max[0]}});
  kl_->update(g[0] / N, int64_t(N));
  warn_if_unhealthy({step, g[3] / N, g[2] / N, sampling_.max_new_tokens, g[0] / N, g[1] / N,
                     group_ >= 2 ? g[5] / g[7] : -1.0});
  return m;
}

// Logs the RlHealth warnings that are new at this iteration (HealthMonitor).
void PpoStage::warn_if_unhealthy(const RlIterationMetrics& m) {
  for (const HealthWarning& w : health_.update(m))
    LOG_RANK0(WARN) << "ppo iteration " << m.iteration << ": " << w.message;
}

// Rank 0's samples of this iteration as JSONL: prompt, response, score, per-source values, EOS,
// and whether the loss saw the sample.
void PpoStage::write_samples(int64_t step, const Samples& s, const WeightedScores& ws,
                             const ShapedScores& sh) const {
  if (ctx_.grid().global_rank() != 0) return;
  const std::filesystem::path dir = std::filesystem::path(ctx_.cfg().output_dir()) / "samples";
  std::filesystem::create_directories(dir);
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld.jsonl", static_cast<long long>(step));
  std::ofstream out(dir / name);
  for (size_t i = 0; i < s.responses.size(); ++i) {
    nlohmann::json rewards = nlohmann::json::object();
    for (size_t k = 0; k < ws.names.size(); ++k) rewards[ws.names[k]] = ws.values[k][i];
    nlohmann::json j = {{"step", step},
                        {"prompt", records_[s.prompt[i]].prompt},
                        {"response", response_text(*tok_, s.responses[i], pad_id_)},
                        {"score", sh.scores[i]},
                        {"rewards", rewards},
                        {"eos", s.responses[i].back() == pad_id_},
                        {"in_loss", bool(sh.keep[i])}};
    // A response may end inside a multi-byte character (or hold stray bytes): written as U+FFFD.
    out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  LOOM_CHECK_T(IoError, out.good(), "ppo: cannot write samples to ", (dir / name).string());
}

}  // namespace loom::rlhf

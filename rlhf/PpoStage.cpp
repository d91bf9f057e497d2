// PPO stage (see PpoStage.h). Rollout bookkeeping lives on the host in (B,T) row-major vectors so
// mini-batches are plain row gathers; every model pass runs in eval mode (dropout off, as usual
// for PPO: the first mini-batch then has ratio exactly 1) and generation uses one prompt per
// generate() call with a seed derived from (seed, step, global row), so a row's sample does not
// depend on how the batch is split over data-parallel ranks. Model outputs are read on the last
// pipeline stage through MicroBatch objectives of forward-only passes.
#include "rlhf/PpoStage.h"

#include <chrono>
#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/util/Check.h"
#include "config/Config.pb.h"
#include "rlhf/JsonlReader.h"
#include "rlhf/Losses.h"
#include "rlhf/Ppo.h"
#include "train/Learner.h"

namespace loom::rlhf {

using config::RunConfig;

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void reduce_sum(const SumReducer& reduce, std::vector<double>& v) {
  if (reduce) reduce(v);
}

Tensor float_tensor(const std::vector<float>& v, int64_t B, int64_t T, Device device) {
  return Tensor::from_vector<float>(v, {B, T}, device);
}

// Rows `rows` of a (B,T) vector.
template <class T>
std::vector<T> gather_rows(const std::vector<T>& v, const std::vector<int64_t>& rows, int64_t T_) {
  std::vector<T> out;
  out.reserve(rows.size() * size_t(T_));
  for (int64_t r : rows) out.insert(out.end(), v.begin() + r * T_, v.begin() + (r + 1) * T_);
  return out;
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

data::Tokenizer ppo_tokenizer(const RunConfig& cfg) {
  const auto& d = cfg.data();
  LOOM_CHECK_T(ConfigError, !d.tokenizer_json().empty() || !d.tokenizer_vocab().empty(),
               "stage PPO: expected a tokenizer (data.tokenizer_vocab + data.tokenizer_merges, or "
               "data.tokenizer_json), got none");
  data::Tokenizer tok =
      !d.tokenizer_json().empty()
          ? data::Tokenizer::from_tokenizer_json(d.tokenizer_json())
          : data::Tokenizer::from_files(d.tokenizer_vocab(), d.tokenizer_merges());
  LOOM_CHECK_T(ConfigError, tok.vocab_size() <= cfg.model().vocab_size(), "model.vocab_size=",
               cfg.model().vocab_size(), ": expected >= the tokenizer's ", tok.vocab_size(),
               " tokens");
  return tok;
}

}  // namespace

PpoRollout score_rollout(PpoModels m, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<std::vector<int64_t>>& responses, int64_t pad_id,
                         double temperature, double kl_coef, Device device, int64_t vocab,
                         double missing_eos_penalty) {
  LOOM_CHECK(prompts.size() == responses.size() && !prompts.empty(),
             "score_rollout: expected as many responses as prompts (> 0), got ", responses.size(),
             " and ", prompts.size());
  PpoRollout r;
  r.rows = int64_t(prompts.size());
  std::vector<int64_t> last;
  std::vector<float> penalty;
  for (size_t i = 0; i < prompts.size(); ++i) {
    LOOM_CHECK(!prompts[i].empty() && !responses[i].empty(),
               "score_rollout: expected a non-empty prompt and response, row ", i);
    penalty.push_back(responses[i].back() == pad_id ? 0.0f : float(missing_eos_penalty));
    r.T = std::max<int64_t>(r.T, int64_t(prompts[i].size() + responses[i].size()));
  }
  const int64_t B = r.rows, T = r.T;
  r.ids.assign(size_t(B * T), pad_id);
  r.targets.assign(size_t(B * T), -100);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> seq(prompts[size_t(b)].begin(), prompts[size_t(b)].end());
    seq.insert(seq.end(), responses[size_t(b)].begin(), responses[size_t(b)].end());
    const int64_t P = int64_t(prompts[size_t(b)].size()), L = int64_t(seq.size());
    for (int64_t t = 0; t < L; ++t) r.ids[size_t(b * T + t)] = seq[size_t(t)];
    for (int64_t t = P - 1; t + 1 < L; ++t) r.targets[size_t(b * T + t)] = seq[size_t(t + 1)];
    last.push_back(L - 1);
    r.resp_len.push_back(double(L - P));
  }
  NoGradGuard g;
  Tensor ids = Tensor::from_vector<int64_t>(r.ids, {B, T}, device);
  Tensor targets = Tensor::from_vector<int64_t>(r.targets, {B, T}, device);
  Tensor last_t = Tensor::from_vector<int64_t>(last, {B}, device);
  Tensor mask = label_mask(targets, DType::F32);
  r.mask = mask.to_vector<float>();
  Tensor logp, ref_logp, values, score;
  forward_pass(m.actor, m.grid, ids, targets, [&](const Tensor& h) {
    logp = m.actor.token_logprobs(h, targets, temperature, vocab);
  });
  forward_pass(m.reference, m.grid, ids, targets, [&](const Tensor& h) {
    ref_logp = m.reference.token_logprobs(h, targets, temperature, vocab);
  });
  forward_pass(m.critic, m.grid, ids, targets,
               [&](const Tensor& h) { values = m.critic.values_of(h); });
  forward_pass(m.reward, m.grid, ids, targets, [&](const Tensor& h) {
    score = models::select_last(m.reward.values_of(h), last_t);
  });
  if (!m.actor.is_last()) {  // the outputs live on the last stage
    r.logp.assign(size_t(B * T), 0.0f);
    r.ref_logp = r.values = r.rewards = r.logp;
    r.scores.assign(size_t(B), 0.0);
    r.kl = r.scores;
    return r;
  }
  if (missing_eos_penalty != 0.0) score = score - Tensor::from_vector<float>(penalty, {B}, device);
  Tensor rewards = compute_rewards(score, logp, ref_logp, mask, kl_coef);
  r.logp = logp.to_vector<float>();
  r.ref_logp = ref_logp.to_vector<float>();
  r.values = values.to_vector<float>();
  r.rewards = rewards.to_vector<float>();
  r.scores = score.to_vector<double>();
  r.kl.assign(size_t(B), 0.0);
  for (int64_t i = 0; i < B * T; ++i)
    r.kl[size_t(i / T)] += double(r.mask[size_t(i)]) * (double(r.logp[size_t(i)]) -
                                                        double(r.ref_logp[size_t(i)]));
  return r;
}

void compute_advantages(PpoRollout& r, double gamma, double lam, const SumReducer& reduce) {
  const int64_t B = r.rows, T = r.T;
  Device cpu = Device::cpu();
  GaeOutput g = gae(float_tensor(r.rewards, B, T, cpu), float_tensor(r.values, B, T, cpu),
                    float_tensor(r.mask, B, T, cpu), gamma, lam);
  std::vector<double> adv = g.advantages.to_vector<double>();
  r.returns = g.returns.to_vector<float>();
  // Whitening statistics over every rank's response tokens (masked_whiten's formula).
  std::vector<double> s = {0.0, 0.0, 0.0};
  for (size_t i = 0; i < adv.size(); ++i) {
    s[0] += r.mask[i] * adv[i];
    s[1] += r.mask[i] * adv[i] * adv[i];
    s[2] += r.mask[i];
  }
  reduce_sum(reduce, s);
  const double n = s[2], mean = n > 0 ? s[0] / n : 0.0;
  const double var = n > 1 ? (s[1] - n * mean * mean) / (n - 1) : 0.0;
  const double inv = 1.0 / std::sqrt(std::max(var, 0.0) + 1e-8);
  r.advantages.assign(adv.size(), 0.0f);
  for (size_t i = 0; i < adv.size(); ++i)
    if (r.mask[i] != 0.0f) r.advantages[i] = float((adv[i] - mean) * inv);
}

namespace {

struct MiniBatch {
  Tensor ids, targets, mask, old_logp, old_values, advantages, returns;
  double tokens = 0;
};

MiniBatch mini_batch(const PpoRollout& r, const std::vector<int64_t>& rows, Device device) {
  const int64_t b = int64_t(rows.size()), T = r.T;
  MiniBatch mb;
  mb.ids = Tensor::from_vector<int64_t>(gather_rows(r.ids, rows, T), {b, T}, device);
  mb.targets = Tensor::from_vector<int64_t>(gather_rows(r.targets, rows, T), {b, T}, device);
  std::vector<float> mask = gather_rows(r.mask, rows, T);
  for (float x : mask) mb.tokens += x;
  mb.mask = float_tensor(mask, b, T, device);
  mb.old_logp = float_tensor(gather_rows(r.logp, rows, T), b, T, device);
  mb.old_values = float_tensor(gather_rows(r.values, rows, T), b, T, device);
  mb.advantages = float_tensor(gather_rows(r.advantages, rows, T), b, T, device);
  mb.returns = float_tensor(gather_rows(r.returns, rows, T), b, T, device);
  return mb;
}

}  // namespace

PpoUpdateStats ppo_update(train::Learner& actor, train::Learner& critic, const PpoRollout& r,
                          const PpoUpdateOptions& o, int64_t step, Device device) {
  LOOM_CHECK(o.mini_batches >= 1 && r.rows % o.mini_batches == 0,
             "ppo_update: expected rows divisible by mini_batches=", o.mini_batches, ", got ",
             r.rows, " rows");
  models::GPT& pi = actor.model();
  auto& value_model = dynamic_cast<models::RewardModel&>(critic.model());
  // Sums weighted by this rank's mini-batch tokens (on the last stage): policy, value, clip,
  // vclip, entropy, kl, tokens.
  std::vector<double> acc(7, 0.0);
  double grad_norm = 0.0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    for (int64_t k = 0; k < o.mini_batches; ++k) {
      std::vector<int64_t> rows;
      for (int64_t i = k; i < r.rows; i += o.mini_batches) rows.push_back(i);
      const MiniBatch mb = mini_batch(r, rows, device);
      // Gradients are averaged over ranks by the learners; scaling by n_rank * dp / n_global
      // makes that average the gradient of the token mean over the global mini-batch.
      std::vector<double> n = {mb.tokens};
      actor.dp_sum(n);
      const double scale = n[0] > 0 ? mb.tokens * double(actor.dp_size()) / n[0] : 0.0;
      const double t = mb.tokens;
      pipeline::MicroBatch a{mb.ids, mb.targets, 0, {}};
      a.objective = [&](const Tensor& h) {
        Tensor logp = pi.token_logprobs(h, mb.targets, o.temperature, o.vocab);
        PolicyLoss pl = ppo_policy_loss(logp, mb.old_logp, mb.advantages, mb.mask, o.clip);
        Tensor loss = pl.loss;
        double entropy = 0.0;
        if (o.entropy_coef != 0.0) {
          Tensor ent = masked_mean(pi.entropy(h, o.temperature, o.vocab), mb.mask);
          entropy = ent.item();
          loss = loss - ent * o.entropy_coef;
        } else {
          NoGradGuard g;
          entropy = masked_mean(pi.entropy(h.detach(), o.temperature, o.vocab), mb.mask).item();
        }
        acc[0] += pl.loss.item() * t;
        acc[2] += pl.clip_fraction * t;
        acc[4] += entropy * t;
        acc[5] += pl.approx_kl * t;
        acc[6] += t;
        return loss * scale;
      };
      pipeline::MicroBatch c{mb.ids, mb.targets, 0, {}};
      c.objective = [&](const Tensor& h) {
        ValueLoss vl = ppo_value_loss(value_model.values_of(h), mb.old_values, mb.returns,
                                      mb.mask, o.value_clip);
        acc[1] += vl.loss.item() * t;
        acc[3] += vl.clip_fraction * t;
        return vl.loss * scale;
      };
      actor.forward_backward({a}, step);
      grad_norm = actor.step(o.lr);
      critic.forward_backward({c}, step);
      critic.step(o.lr);
    }
  }
  actor.from_last_stage(acc);
  actor.dp_sum(acc);
  const double n = std::max(acc[6], 1.0);
  return {acc[0] / n, acc[1] / n, acc[2] / n, acc[3] / n, acc[4] / n, acc[5] / n, grad_norm};
}

// ---- the stage ------------------------------------------------------------------------------

PpoStage::PpoStage(train::StageContext& ctx, train::Learner& policy) : ExampleStage(ctx) {
  const RunConfig& cfg = ctx.cfg();
  const auto& p = cfg.ppo();
  const auto& ro = p.rollout();
  batch_ = ro.batch_size();
  LOOM_CHECK_T(ConfigError, batch_ % p.mini_batches() == 0, "ppo.mini_batches=", p.mini_batches(),
               ": expected a divisor of ppo.rollout.batch_size=", batch_);
  data::Tokenizer tok = ppo_tokenizer(cfg);
  pad_id_ = require_eot(tok);
  vocab_ = tok.vocab_size();
  const ChatTemplate tmpl = template_named(cfg.sft().template_());
  const int64_t block = policy.model().config().block_size;
  detail::read_jsonl(
      "ppo", p.prompts_path(), false,
      [&](const nlohmann::json& j) {
        const std::string text = detail::get_string(j, "prompt");
        if (text.empty()) throw detail::LineError{"expected a non-empty \"prompt\"", "empty"};
        std::vector<int32_t> ids = encode_prompt(tok, tmpl, text);
        if (int64_t(ids.size()) >= block)
          throw detail::LineError{
              loom::detail::str_cat("prompt of ", ids.size(), " tokens leaves no room for a ",
                                    "response in model.block_size=", block),
              "too_long"};
        prompts_.push_back(std::move(ids));
      },
      [](const std::string&) {});
  desc_ = loom::detail::str_cat("ppo ", p.prompts_path(), ": ", prompts_.size(), " prompts");

  const models::GPTConfig& mc = policy.model().config();
  reference_ = ctx.make_model(mc, false, cfg.init_from());
  reward_.reset(static_cast<models::RewardModel*>(ctx.make_model(mc, true, p.reward_model()).release()));
  critic_ = ctx.make_learner(ctx.make_model(mc, true, p.critic_init()));
  kl_ = make_kl_controller(p.adaptive_kl(), p.kl_coef(), p.kl_target(), double(p.kl_horizon()));

  gamma_ = p.gamma();
  lam_ = p.lam();
  upd_.clip = p.clip();
  upd_.value_clip = p.value_clip();
  upd_.temperature = ro.temperature();
  upd_.epochs = p.epochs();
  upd_.mini_batches = p.mini_batches();
  upd_.vocab = vocab_;
  missing_eos_penalty_ = p.missing_eos_penalty();
  sampling_.max_new_tokens = ro.max_new_tokens();
  sampling_.temperature = ro.temperature();
  sampling_.top_k = ro.top_k();
  sampling_.top_p = ro.top_p();
  sampling_.eos_id = pad_id_;
  sampling_.vocab_size = vocab_;
  sampling_.validate();
}

PpoStage::~PpoStage() = default;

PpoModels PpoStage::models(train::Learner& policy) {
  return {policy.model(), *reference_,
          dynamic_cast<models::RewardModel&>(critic_->model()), *reward_, ctx_.grid()};
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

train::StepResult PpoStage::run_step(int64_t step, double lr, train::Learner& policy) {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  PpoModels m = models(policy);
  for (models::GPT* model : {&m.actor, &m.reference, static_cast<models::GPT*>(&m.critic),
                             static_cast<models::GPT*>(&m.reward)})
    model->eval();
  std::vector<size_t> idx = next_indices(prompts_.size(), batch_);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int64_t>> responses;
  for (size_t i = 0; i < idx.size(); ++i) {
    const uint64_t row = uint64_t(ctx_.dp_rank()) * uint64_t(batch_) + i;  // global row
    models::SamplingOptions o = sampling_;
    o.seed = splitmix64(ctx_.cfg().seed() ^ splitmix64(uint64_t(step) * 0x100000000ull + row));
    prompts.push_back(prompts_[idx[i]]);
    std::vector<int64_t> p(prompts.back().begin(), prompts.back().end());
    responses.push_back(models::generate(m.actor, {p}, o).front());
    LOOM_INTERNAL_ASSERT(!responses.back().empty());
  }
  auto t1 = Clock::now();
  const double kl_coef = kl_->value();
  PpoRollout r = score_rollout(m, prompts, responses, pad_id_, upd_.temperature, kl_coef,
                               ctx_.device(), vocab_, missing_eos_penalty_);
  compute_advantages(r, gamma_, lam_, [&policy](std::vector<double>& v) { policy.dp_sum(v); });
  upd_.lr = lr;
  PpoUpdateStats st = ppo_update(policy, *critic_, r, upd_, step, ctx_.device());
  auto t2 = Clock::now();

  std::vector<double> g = {0.0, 0.0, 0.0, double(r.rows)};
  for (int64_t b = 0; b < r.rows; ++b) {
    g[0] += r.scores[size_t(b)];
    g[1] += r.kl[size_t(b)];
    g[2] += r.resp_len[size_t(b)];
  }
  policy.from_last_stage(g);
  policy.dp_sum(g);
  const double kl = g[1] / g[3];
  kl_->update(kl, int64_t(g[3]));
  const double loss = st.policy_loss + st.value_loss;
  LOOM_CHECK_T(NonFiniteError, std::isfinite(loss), "train: PPO loss is ", loss, " at step ",
               step, "; hint: lower optimizer.lr or ppo.clip");
  train::Metrics metrics = {{"score_mean", g[0] / g[3]},
                            {"kl", kl},
                            {"kl_coef", kl_coef},
                            {"policy_loss", st.policy_loss},
                            {"value_loss", st.value_loss},
                            {"clip_fraction", st.clip_fraction},
                            {"value_clip_fraction", st.value_clip_fraction},
                            {"approx_kl", st.approx_kl},
                            {"entropy", st.entropy},
                            {"response_length", g[2] / g[3]},
                            {"gen_s", std::chrono::duration<double>(t1 - t0).count()},
                            {"train_s", std::chrono::duration<double>(t2 - t1).count()}};
  return {loss, st.grad_norm, std::move(metrics)};
}

}  // namespace loom::rlhf

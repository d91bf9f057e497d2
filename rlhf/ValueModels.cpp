// The RL stage's reward model and critic of their own shape (see ValueModels.h).
#include "rlhf/ValueModels.h"

#include <algorithm>

#include "config/ConfigLoader.h"
#include "config/ConfigValidate.h"
#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "core/util/Logging.h"
#include "io/Checkpoint.h"
#include "io/HfConvert.h"
#include "io/HfSource.h"
#include "rlhf/Stages.h"
#include "train/Trainer.h"

namespace loom::rlhf {

using config::RunConfig;

namespace {

std::unique_ptr<data::Tokenizer> tokenizer_of(const std::string& json, const std::string& vocab,
                                              const std::string& merges) {
  if (!json.empty())
    return std::make_unique<data::Tokenizer>(data::Tokenizer::from_tokenizer_json(json));
  if (!vocab.empty() && !merges.empty())
    return std::make_unique<data::Tokenizer>(data::Tokenizer::from_files(vocab, merges));
  return nullptr;
}

// ConfigError listing the model.* problems of `shaped` (the run with the source's model section).
void check_layout(const RunConfig& shaped, const std::string& field, const std::string& source) {
  const auto& par = shaped.parallel();
  std::string problems;
  for (const std::string& p : config::find_problems(shaped, int(par.tp() * par.pp() * par.dp())))
    if (p.rfind("model.", 0) == 0) problems += "\n  " + p;
  LOOM_CHECK_T(ConfigError, problems.empty(), field, "=", source, ": its model (the shape its ",
               "source records) cannot run under this run's layout (parallel.tp=", par.tp(),
               ", parallel.pp=", par.pp(), "):", problems);
}

// ConfigError unless the model of `field` reads contexts as long as the policy's.
void check_context(const models::GPTConfig& got, const models::GPTConfig& policy,
                   const std::string& field, const std::string& source, const char* why) {
  LOOM_CHECK_T(ConfigError, got.block_size >= policy.block_size, field, "=", source,
               ": block_size=", got.block_size,
               " but the policy's model.block_size=", policy.block_size, "; ", why,
               ", so expected block_size >= ", policy.block_size);
}

std::unique_ptr<models::GPT> build(train::StageContext& ctx, const models::GPTConfig& config,
                                   const std::string& source) {
  return ctx.make_model(config, /*reward=*/true, source);
}

}  // namespace

SourceModel read_source_model(const RunConfig& run, const std::string& field,
                              const std::string& source, const models::GPTConfig& policy) {
  SourceModel s;
  s.config = policy;
  if (source.empty()) return s;
  RunConfig shaped = run;
  if (source.rfind("hf:", 0) == 0) {
    const std::string dir = io::resolve_hf_dir(source.substr(3));
    const io::detail::HfConfig hc = io::detail::read_hf_config(dir);
    models::GPTConfig g = hc.config;
    g.vocab_size = hc.vocab_size;
    config::ModelConfig m = g.to_model_config();
    m.set_vocab_pad_multiple(run.model().vocab_pad_multiple());
    *shaped.mutable_model() = m;
    const io::HfTokenizerFiles t = io::detail::find_hf_tokenizer(dir);
    s.tokenizer = tokenizer_of(t.tokenizer_json, t.vocab_json, t.merges_txt);
  } else {
    const io::CheckpointMeta meta = io::read_checkpoint_meta(source);
    const io::TokenizerFiles t = io::checkpoint_tokenizer(source);
    s.tokenizer = tokenizer_of(t.tokenizer_json, t.vocab_json, t.merges_txt);
    auto it = meta.entries.find("config");
    if (it == meta.entries.end()) return s;
    *shaped.mutable_model() = config::parse_text(it->second, source + "/meta.json:config").model();
  }
  check_layout(shaped, field, source);
  s.config = train::gpt_config_from(shaped);
  s.own_shape = true;
  return s;
}

bool same_vocabulary(const data::Tokenizer& a, const data::Tokenizer& b) {
  if (a.vocab_size() != b.vocab_size() || a.num_merges() != b.num_merges()) return false;
  for (int32_t i = 0; i < a.vocab_size(); ++i)
    if (a.id_to_token(i) != b.id_to_token(i) || a.is_special(i) != b.is_special(i)) return false;
  return true;
}

std::unique_ptr<train::Learner> make_critic(train::StageContext& ctx,
                                            const data::Tokenizer& policy_tok,
                                            const models::GPTConfig& policy,
                                            const std::string& source) {
  const std::string field = "ppo.critic_init";
  SourceModel s = read_source_model(ctx.cfg(), field, source, policy);
  LOOM_CHECK_T(ConfigError, !s.tokenizer || same_vocabulary(*s.tokenizer, policy_tok), field, "=",
               source, ": its tokenizer (", s.tokenizer ? s.tokenizer->description() : "",
               ") differs from the policy's (", policy_tok.description(), "); the critic's ",
               "values are per policy token, so the critic must share the policy's tokenizer; ",
               "hint: set ppo.critic_init to a checkpoint trained with the policy's tokenizer ",
               "(its default is ppo.reward_model)");
  LOOM_CHECK_T(ConfigError, s.config.real_vocab_size == policy.real_vocab_size, field, "=", source,
               ": vocab_size=", s.config.real_vocab_size,
               " but the policy's model.vocab_size=", policy.real_vocab_size,
               "; the critic's values are per policy token, so the ",
               "critic must share the policy's tokenizer");
  check_context(s.config, policy, field, source, "the critic values every rollout token");
  return ctx.make_learner(build(ctx, s.config, source));
}

// ---- RewardScorer ---------------------------------------------------------------------------

RewardScorer::RewardScorer(train::StageContext& ctx, const data::Tokenizer& policy_tok,
                           const models::GPTConfig& policy, const std::string& source)
    : template_(template_named(ctx.cfg().sft().template_())) {
  const std::string field = "ppo.reward_model";
  SourceModel s = read_source_model(ctx.cfg(), field, source, policy);
  if (s.tokenizer && !same_vocabulary(*s.tokenizer, policy_tok)) {
    tok_ = std::move(s.tokenizer);
    LOOM_CHECK_T(ConfigError, tok_->eot_id().has_value(), field, "=", source, ": its tokenizer (",
                 tok_->description(), ") has no <|endoftext|> token; expected one, to end the ",
                 "re-encoded responses that ended with the policy's EOS");
    eot_ = *tok_->eot_id();
    LOOM_CHECK_T(ConfigError, tok_->vocab_size() <= s.config.real_vocab_size, field, "=", source,
                 ": its tokenizer has ", tok_->vocab_size(),
                 " tokens but its model.vocab_size=", s.config.real_vocab_size,
                 "; expected a tokenizer that fits its model");
    LOG_RANK0(INFO) << field << ": its tokenizer (" << tok_->description()
                    << ") differs from the policy's; samples are decoded and re-encoded with it";
  } else {
    LOOM_CHECK_T(ConfigError, s.config.real_vocab_size == policy.real_vocab_size, field, "=",
                 source, ": vocab_size=", s.config.real_vocab_size,
                 " but the policy's model.vocab_size=", policy.real_vocab_size, " and ", source,
                 " carries no tokenizer of its own to re-encode the samples with; expected the ",
                 "policy's vocabulary or a checkpoint that carries its tokenizer");
    check_context(s.config, policy, field, source,
                  "with the policy's tokenizer it reads the rollout's tokens");
  }
  model_.reset(static_cast<models::RewardModel*>(build(ctx, s.config, source).release()));
}

RewardScorer::~RewardScorer() = default;

std::string RewardScorer::describe() const {
  const models::GPTConfig& c = model_->config();
  return detail::str_cat("n_layer=", c.n_layer, " n_embd=", c.n_embd,
                         tok_ ? " (its own tokenizer: samples re-encoded)" : "");
}

std::vector<std::vector<int64_t>> RewardScorer::encode(const std::vector<SampleText>& texts) const {
  LOOM_CHECK(tok_ != nullptr, "RewardScorer.encode: the reward model shares the policy's ",
             "tokenizer; expected a reward model with a tokenizer of its own");
  const int64_t block = model_->config().block_size;
  std::vector<std::vector<int64_t>> rows;
  for (const SampleText& t : texts) {
    std::vector<int32_t> ids = encode_prompt(*tok_, template_, t.prompt);
    tok_->encode_into(t.response, ids);
    if (t.eos) ids.push_back(eot_);
    if (int64_t(ids.size()) > block) {
      if (!warned_long_) {
        LOG_RANK0(WARN) << "ppo.reward_model: a sample re-encoded with its tokenizer has "
                        << ids.size() << " tokens, more than its block_size=" << block
                        << "; it scores the last " << block << " (warned once)";
      }
      warned_long_ = true;
      ids.erase(ids.begin(), ids.end() - block);
    }
    rows.emplace_back(ids.begin(), ids.end());
  }
  return rows;
}

std::vector<double> RewardScorer::score(const Rollout& r, const std::vector<SampleText>& texts,
                                        ProcessGrid& grid, Device device) {
  if (!tok_) return reward_model_scores(*model_, grid, r, device);
  LOOM_CHECK(int64_t(texts.size()) == r.rows, "RewardScorer.score: expected ", r.rows,
             " sample texts, got ", texts.size());
  return score_sequences(*model_, grid, encode(texts), eot_, device);
}

std::vector<double> score_sequences(models::RewardModel& reward, ProcessGrid& grid,
                                    const std::vector<std::vector<int64_t>>& rows, int64_t pad_id,
                                    Device device) {
  LOOM_CHECK(!rows.empty(), "score_sequences: expected at least one row");
  const int64_t B = int64_t(rows.size());
  int64_t T = 0;
  for (const auto& row : rows) {
    LOOM_CHECK(!row.empty(), "score_sequences: expected non-empty rows");
    T = std::max<int64_t>(T, int64_t(row.size()));
  }
  std::vector<int64_t> ids(size_t(B * T), pad_id), last;
  for (int64_t b = 0; b < B; ++b) {
    std::copy(rows[size_t(b)].begin(), rows[size_t(b)].end(), ids.begin() + b * T);
    last.push_back(int64_t(rows[size_t(b)].size()) - 1);
  }
  NoGradGuard g;
  Tensor last_t = Tensor::from_vector<int64_t>(last, {B}, device);
  Tensor score;
  pipeline::MicroBatch mb{Tensor::from_vector<int64_t>(ids, {B, T}, device),
                          Tensor::full({B, T}, -100.0, DType::I64, device),
                          0,
                          {}};
  mb.objective = [&](const Tensor& h) {
    score = models::select_last(reward.values_of(h), last_t);
    return Tensor::scalar(0.0, DType::F32, h.device());
  };
  train::forward_only(reward, grid, {mb});
  if (!reward.is_last()) return std::vector<double>(size_t(B), 0.0);
  return score.to_vector<double>();
}

}  // namespace loom::rlhf

// SFT, reward-model and DPO stages (see Stages.h).
#include "rlhf/Stages.h"

#include <cmath>
#include <random>

#include "core/autograd/GradMode.h"
#include "core/ops/Reduction.h"
#include "core/util/Check.h"
#include "config/Config.pb.h"
#include "models/RewardModel.h"
#include "rlhf/Losses.h"
#include "rlhf/PreferenceDataset.h"
#include "rlhf/SftDataset.h"

namespace loom::rlhf {

using config::RunConfig;

std::vector<size_t> Stage::next_indices(size_t n, int64_t batch) {
  const int64_t per_step = batch * ctx_.dp_size;
  LOOM_CHECK_T(DataError, int64_t(n) >= per_step, "stage: expected at least ", per_step,
               " training examples (micro_batch_size x dp), got ", n);
  if (pos_.position + per_step > int64_t(n)) pos_ = {pos_.epoch + 1, 0};
  if (order_epoch_ != pos_.epoch || order_.size() != n) {
    order_.resize(n);
    for (size_t i = 0; i < n; ++i) order_[i] = i;
    if (shuffle_) {  // Fisher-Yates on mt19937_64: the same order on every platform
      std::mt19937_64 rng(seed_ + uint64_t(pos_.epoch));
      for (size_t i = n - 1; i > 0; --i) std::swap(order_[i], order_[size_t(rng() % (i + 1))]);
    }
    order_epoch_ = pos_.epoch;
  }
  std::vector<size_t> out;
  const int64_t first = pos_.position + int64_t(ctx_.dp_rank) * batch;
  for (int64_t i = 0; i < batch; ++i) out.push_back(order_[size_t(first + i)]);
  pos_.position += per_step;
  return out;
}

ChatTemplate template_named(const std::string& name) {
  if (name == "chat") return ChatTemplate{};
  LOOM_CHECK_T(ConfigError, name == "plain" || name.empty(), "sft.template=\"", name,
               "\": expected \"plain\" or \"chat\"");
  ChatTemplate t;
  t.system = "{content}\n";
  t.user = "{content}";
  t.assistant = "{content}";
  return t;
}

namespace {

data::Tokenizer load_tokenizer(const RunConfig& cfg) {
  const auto& d = cfg.data();
  data::Tokenizer tok = [&] {
    if (!d.tokenizer_json().empty())
      return data::Tokenizer::from_tokenizer_json(d.tokenizer_json());
    LOOM_CHECK_T(ConfigError, !d.tokenizer_vocab().empty(), "stage ",
                 RunConfig::Stage_Name(cfg.stage()),
                 ": expected a tokenizer (data.tokenizer_vocab + data.tokenizer_merges, or "
                 "data.tokenizer_json), got none");
    return data::Tokenizer::from_files(d.tokenizer_vocab(), d.tokenizer_merges());
  }();
  LOOM_CHECK_T(ConfigError, tok.vocab_size() <= cfg.model().vocab_size(), "model.vocab_size=",
               cfg.model().vocab_size(), ": expected >= the tokenizer's ", tok.vocab_size(),
               " tokens");
  require_eot(tok);
  return tok;
}

DatasetOptions dataset_options(const RunConfig& cfg) {
  DatasetOptions o;
  o.seq_len = cfg.data().seq_len();
  o.chat_template = template_named(cfg.sft().template_());
  return o;
}

std::string stats_str(const std::string& path, const LoadStats& s) {
  return detail::str_cat(path, ": ", s.loaded, " examples, ", s.skipped_bad, " bad skipped, ",
                         s.skipped_long, " over-long skipped, ", s.truncated, " truncated");
}

// ---- SFT ------------------------------------------------------------------------------------
class SftStage : public Stage {
 public:
  SftStage(const RunConfig& cfg, models::GPT& model, StageContext ctx) : model_(model) {
    ctx_ = std::move(ctx);
    seed_ = cfg.seed();
    shuffle_ = cfg.data().shuffle();
    batch_ = cfg.batch().micro_batch_size();
    data::Tokenizer tok = load_tokenizer(cfg);
    DatasetOptions o = dataset_options(cfg);
    const bool packing = cfg.sft().packing(), mask_prompt = cfg.sft().mask_prompt();
    auto rows_of = [&](const std::string& path) {
      SftDataset ds = load_sft_jsonl(path, tok, o);
      if (!mask_prompt)  // every token after the first is a target
        for (auto& ex : ds.examples)
          for (size_t i = 1; i < ex.is_response.size(); ++i) ex.is_response[i] = 1;
      desc_ += (desc_.empty() ? "" : "; ") + stats_str(path, ds.stats);
      int32_t pad = *tok.eot_id();
      return packing ? pack_rows(ds.examples, o.seq_len, pad)
                     : pad_rows(ds.examples, o.seq_len, pad);
    };
    train_ = rows_of(cfg.sft().train_path());
    if (!cfg.sft().val_path().empty()) val_ = rows_of(cfg.sft().val_path());
  }

  StageStep next_step() override {
    std::vector<SftRow> rows;
    for (size_t i : next_indices(train_.size(), batch_)) rows.push_back(train_[i]);
    SftBatch b = collate(rows, 0, rows.size(), ctx_.device);
    return {model_.loss(b.ids, b.targets), {}};
  }

  StageMetrics evaluate(int64_t max_batches) override {
    if (val_.empty()) return {};
    NoGradGuard g;
    double sum = 0.0;
    int64_t n = 0;
    for (size_t begin = 0; begin < val_.size() && n < max_batches; begin += size_t(batch_), ++n) {
      size_t count = std::min(size_t(batch_), val_.size() - begin);
      SftBatch b = collate(val_, begin, count, ctx_.device);
      sum += model_.loss(b.ids, b.targets).item();
    }
    double loss = sum / double(n);
    return {{"val_loss", loss}, {"val_ppl", std::exp(loss)}};
  }

  std::string describe() const override { return "sft " + desc_; }

 private:
  models::GPT& model_;
  int64_t batch_ = 1;
  std::vector<SftRow> train_, val_;
  std::string desc_;
};

// ---- preference stages (REWARD, DPO) ---------------------------------------------------------
class PreferenceStage : public Stage {
 protected:
  PreferenceStage(const RunConfig& cfg, StageContext ctx, const std::string& train_path,
                  const std::string& val_path) {
    ctx_ = std::move(ctx);
    seed_ = cfg.seed();
    shuffle_ = cfg.data().shuffle();
    batch_ = cfg.batch().micro_batch_size();
    seq_len_ = cfg.data().seq_len();
    data::Tokenizer tok = load_tokenizer(cfg);
    pad_ = *tok.eot_id();
    DatasetOptions o = dataset_options(cfg);
    PreferenceDataset tr = load_preference_jsonl(train_path, tok, o);
    desc_ = stats_str(train_path, tr.stats);
    train_ = std::move(tr.examples);
    if (!val_path.empty()) {
      PreferenceDataset va = load_preference_jsonl(val_path, tok, o);
      desc_ += "; " + stats_str(val_path, va.stats);
      val_ = std::move(va.examples);
    }
  }
  PreferenceBatch next_batch() {
    std::vector<PreferenceExample> ex;
    for (size_t i : next_indices(train_.size(), batch_)) ex.push_back(train_[i]);
    return collate_preferences(ex, 0, ex.size(), seq_len_, pad_, ctx_.device);
  }
  int64_t batch_ = 1, seq_len_ = 0;
  int32_t pad_ = 0;
  std::vector<PreferenceExample> train_, val_;
  std::string desc_;
};

class RewardStage : public PreferenceStage {
 public:
  RewardStage(const RunConfig& cfg, models::GPT& model, StageContext ctx)
      : PreferenceStage(cfg, std::move(ctx), cfg.reward().train_path(), cfg.reward().val_path()),
        model_(dynamic_cast<models::RewardModel&>(model)) {}

  StageStep next_step() override {
    PreferenceBatch b = next_batch();
    Tensor rc = model_.score(b.chosen_ids, b.chosen_last);      // (B)
    Tensor rr = model_.score(b.rejected_ids, b.rejected_last);  // (B)
    RewardMetrics m = reward_metrics(rc.detach(), rr.detach());
    return {pairwise_reward_loss(rc, rr), {{"accuracy", m.accuracy}, {"margin", m.mean_margin}}};
  }

  StageMetrics evaluate(int64_t max_batches) override {
    if (val_.empty()) return {};
    NoGradGuard g;
    double loss = 0.0, acc = 0.0, margin = 0.0;
    size_t pairs = 0;
    int64_t n = 0;
    for (size_t begin = 0; begin < val_.size() && n < max_batches; begin += size_t(batch_), ++n) {
      size_t count = std::min(size_t(batch_), val_.size() - begin);
      PreferenceBatch b = collate_preferences(val_, begin, count, seq_len_, pad_, ctx_.device);
      Tensor rc = model_.score(b.chosen_ids, b.chosen_last);
      Tensor rr = model_.score(b.rejected_ids, b.rejected_last);
      RewardMetrics m = reward_metrics(rc, rr);
      // Weighted by pairs, so a short last batch counts per pair like the others.
      loss += pairwise_reward_loss(rc, rr).item() * double(count);
      acc += m.accuracy * double(count);
      margin += m.mean_margin * double(count);
      pairs += count;
    }
    const double p = double(pairs);
    return {{"val_loss", loss / p}, {"val_accuracy", acc / p}, {"val_margin", margin / p}};
  }

  std::string describe() const override { return "reward " + desc_; }

 private:
  models::RewardModel& model_;
};

class DpoStage : public PreferenceStage {
 public:
  DpoStage(const RunConfig& cfg, models::GPT& model, StageContext ctx)
      : PreferenceStage(cfg, std::move(ctx), cfg.dpo().train_path(), ""),
        model_(model),
        beta_(cfg.dpo().beta()) {
    Generator g(cfg.seed());
    reference_ = std::make_unique<models::GPT>(model.config(), g, DType::F32, ctx_.device);
    LOOM_INTERNAL_ASSERT(ctx_.load_weights);
    ctx_.load_weights(cfg.dpo().reference(), *reference_);
    reference_->eval();
  }

  StageStep next_step() override {
    PreferenceBatch b = next_batch();
    Tensor ref_c, ref_r;
    {
      NoGradGuard g;
      ref_c = sequence_logprob(*reference_, b.chosen_ids, b.chosen_targets);
      ref_r = sequence_logprob(*reference_, b.rejected_ids, b.rejected_targets);
    }
    Tensor pc = sequence_logprob(model_, b.chosen_ids, b.chosen_targets);
    Tensor pr = sequence_logprob(model_, b.rejected_ids, b.rejected_targets);
    DpoOutput d = dpo_loss(pc, pr, ref_c, ref_r, beta_);
    return {d.loss, {{"reward_accuracy", d.accuracy}, {"reward_margin", d.mean_margin}}};
  }

  StageMetrics evaluate(int64_t) override { return {}; }
  std::string describe() const override { return "dpo " + desc_; }

 private:
  // Sum of the response tokens' log-probs per row: ids, targets (B,T) -> (B).
  static Tensor sequence_logprob(models::GPT& m, const Tensor& ids, const Tensor& targets) {
    return sum(token_logprobs(m.forward(ids), targets), {1});
  }
  models::GPT& model_;
  double beta_;
  std::unique_ptr<models::GPT> reference_;
};

}  // namespace

std::unique_ptr<Stage> make_stage(const RunConfig& cfg, models::GPT& model, StageContext ctx) {
  switch (cfg.stage()) {
    case RunConfig::SFT:
      return std::make_unique<SftStage>(cfg, model, std::move(ctx));
    case RunConfig::REWARD:
      return std::make_unique<RewardStage>(cfg, model, std::move(ctx));
    case RunConfig::DPO:
      return std::make_unique<DpoStage>(cfg, model, std::move(ctx));
    default:
      throw ConfigError(detail::str_cat("train: stage=", RunConfig::Stage_Name(cfg.stage()),
                                        " is not supported by this trainer yet; expected "
                                        "PRETRAIN, SFT, REWARD or DPO"));
  }
}

}  // namespace loom::rlhf

// SFT, reward-model and DPO stages (see Stages.h).
#include "rlhf/Stages.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "config/ConfigDefaults.h"
#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Indexing.h"
#include "core/ops/Reduction.h"
#include "core/ops/View.h"
#include "core/util/Check.h"
#include "models/RewardModel.h"
#include "rlhf/Losses.h"
#include "rlhf/PpoStage.h"
#include "rlhf/PreferenceDataset.h"
#include "rlhf/SftDataset.h"

namespace loom::rlhf {

using config::RunConfig;
using nlohmann::json;
using pipeline::MicroBatch;
using train::Learner;
using train::StepResult;

// ---- ExampleStage ---------------------------------------------------------------------------

ExampleStage::ExampleStage(train::StageContext& ctx)
    : ctx_(ctx), grad_accum_(config::grad_accum_steps(ctx.cfg())) {}

std::vector<size_t> ExampleStage::next_indices(size_t n, int64_t batch) {
  const int64_t per_step = batch * ctx_.dp_size();
  LOOM_CHECK_T(DataError, int64_t(n) >= per_step, "stage: expected at least ", per_step,
               " training examples (micro_batch_size x dp), got ", n);
  if (pos_.position + per_step > int64_t(n)) pos_ = {pos_.epoch + 1, 0};
  if (order_epoch_ != pos_.epoch || order_.size() != n) {
    order_.resize(n);
    for (size_t i = 0; i < n; ++i) order_[i] = i;
    if (ctx_.cfg().data().shuffle()) {  // Fisher-Yates on mt19937_64: the same order everywhere
      std::mt19937_64 rng(ctx_.cfg().seed() + uint64_t(pos_.epoch));
      for (size_t i = n - 1; i > 0; --i) std::swap(order_[i], order_[size_t(rng() % (i + 1))]);
    }
    order_epoch_ = pos_.epoch;
  }
  std::vector<size_t> out;
  const int64_t first = pos_.position + int64_t(ctx_.dp_rank()) * batch;
  for (int64_t i = 0; i < batch; ++i) out.push_back(order_[size_t(first + i)]);
  pos_.position += per_step;
  return out;
}

Metrics ExampleStage::reduce_metrics(const std::vector<std::string>& names,
                                     std::vector<double> sums, int64_t micro_batches,
                                     Learner& policy) const {
  policy.from_last_stage(sums);
  policy.dp_sum(sums);
  Metrics out;
  for (size_t i = 0; i < names.size(); ++i)
    out.emplace_back(names[i], sums[i] / double(micro_batches * ctx_.dp_size()));
  return out;
}

std::string ExampleStage::state() const {
  json j;
  j["loader"] = {{"epoch", pos_.epoch}, {"position", pos_.position}};
  return j.dump();
}

void ExampleStage::set_state(const std::string& trainer_state_json, const std::string&) {
  const json loader = json::parse(trainer_state_json).value("loader", json::object());
  pos_ = {loader.value("epoch", int64_t(0)), loader.value("position", int64_t(0))};
}

ChatTemplate template_named(const std::string& name) {
  if (name == "chat" || name == "hf") return ChatTemplate{};  // "hf": see dataset_options
  LOOM_CHECK_T(ConfigError, name == "plain" || name.empty(), "sft.template=\"", name,
               "\": expected \"plain\", \"chat\" or \"hf\" (the model's own template from the "
               "tokenizer_config.json beside data.tokenizer_json)");
  ChatTemplate t;
  t.system = "{content}\n";
  t.user = "{content}";
  t.assistant = "{content}";
  return t;
}

const data::Tokenizer& stage_tokenizer(const train::StageContext& ctx) {
  const data::Tokenizer& tok = ctx.tokenizer();
  if (ctx.cfg().sft().template_() != "hf") require_eot(tok);  // the model's template names its own
  return tok;
}

namespace {

// The padding id: the EOT of the plain templates, else the model template's pad or eos token.
int32_t pad_id(const data::Tokenizer& tok, const DatasetOptions& o) {
  if (!o.model_template) return require_eot(tok);
  for (const char* key : {"pad_token", "eos_token"}) {
    const std::string name = o.model_template->special_token(key);
    if (auto id = name.empty() ? std::nullopt : tok.token_to_id(name)) return *id;
  }
  throw ConfigError("sft.template=\"hf\": the model's tokenizer_config.json names neither a "
                    "pad_token nor an eos_token that the tokenizer has");
}

DatasetOptions dataset_options(const RunConfig& cfg) {
  DatasetOptions o;
  o.seq_len = cfg.data().seq_len();
  o.chat_template = template_named(cfg.sft().template_());
  if (cfg.sft().template_() == "hf") {
    o.model_template = data::ChatTemplateJinja::find_for_tokenizer(cfg.data().tokenizer_json());
    LOOM_CHECK_T(ConfigError, o.model_template.has_value(), "sft.template=\"hf\": expected a "
                 "tokenizer_config.json with a chat_template beside data.tokenizer_json=\"",
                 cfg.data().tokenizer_json(), "\"");
  }
  return o;
}

std::string stats_str(const std::string& path, const LoadStats& s) {
  return detail::str_cat(path, ": ", s.loaded, " examples, ", s.skipped_bad, " bad skipped, ",
                         s.skipped_long, " over-long skipped, ", s.truncated, " truncated");
}

// ---- SFT ------------------------------------------------------------------------------------
class SftStage : public ExampleStage {
 public:
  explicit SftStage(train::StageContext& ctx) : ExampleStage(ctx) {
    const RunConfig& cfg = ctx.cfg();
    batch_ = cfg.batch().micro_batch_size();
    const data::Tokenizer& tok = stage_tokenizer(ctx);
    DatasetOptions o = dataset_options(cfg);
    const bool packing = cfg.sft().packing(), mask_prompt = cfg.sft().mask_prompt();
    auto rows_of = [&](const std::string& path) {
      SftDataset ds = load_sft_jsonl(path, tok, o);
      if (!mask_prompt)  // every token after the first is a target
        for (auto& ex : ds.examples)
          for (size_t i = 1; i < ex.is_response.size(); ++i) ex.is_response[i] = 1;
      desc_ += (desc_.empty() ? "" : "; ") + stats_str(path, ds.stats);
      int32_t pad = pad_id(tok, o);
      return packing ? pack_rows(ds.examples, o.seq_len, pad)
                     : pad_rows(ds.examples, o.seq_len, pad);
    };
    train_ = rows_of(cfg.sft().train_path());
    if (!cfg.sft().val_path().empty()) val_ = rows_of(cfg.sft().val_path());
  }

  StepResult run_step(int64_t step, double lr, Learner& policy) override {
    std::vector<MicroBatch> mbs;
    for (int64_t m = 0; m < grad_accum_; ++m) {
      std::vector<SftRow> rows;
      for (size_t i : next_indices(train_.size(), batch_)) rows.push_back(train_[i]);
      SftBatch b = collate(rows, 0, rows.size(), ctx_.device());
      mbs.push_back({b.ids, b.targets, m, {}});  // the model's LM loss on response targets
    }
    const double loss = policy.forward_backward(mbs, step);
    LOOM_CHECK_T(NonFiniteError, std::isfinite(loss), "train: SFT loss is ", loss, " at step ",
                 step, "; hint: lower optimizer.lr or check the data");
    return {loss, policy.step(lr), {}};
  }

  Metrics evaluate(Learner& policy, int64_t max_batches) override {
    if (val_.empty()) return {};
    std::vector<MicroBatch> mbs;
    for (size_t begin = 0; begin < val_.size() && int64_t(mbs.size()) < max_batches;
         begin += size_t(batch_)) {
      SftBatch b = collate(val_, begin, std::min(size_t(batch_), val_.size() - begin),
                           ctx_.device());
      mbs.push_back({b.ids, b.targets, int64_t(mbs.size()), {}});
    }
    const double loss = policy.evaluate(mbs);
    return {{"val_loss", loss}, {"val_ppl", std::exp(loss)}};
  }

  std::string describe() const override { return "sft " + desc_; }

 private:
  int64_t batch_ = 1;
  std::vector<SftRow> train_, val_;
  std::string desc_;
};

// ---- preference stages (REWARD, DPO) ---------------------------------------------------------

// A preference micro-batch as one batch of 2B rows: the chosen rows, then the rejected ones.
struct PairBatch {
  Tensor ids, targets, last;  // (2B,T), (2B,T), (2B)
  int64_t pairs = 0;
};

PairBatch pair_batch(const PreferenceBatch& b) {
  return {cat({b.chosen_ids, b.rejected_ids}, 0), cat({b.chosen_targets, b.rejected_targets}, 0),
          cat({b.chosen_last, b.rejected_last}, 0), b.chosen_ids.size(0)};
}

class PreferenceStage : public ExampleStage {
 protected:
  PreferenceStage(train::StageContext& ctx, const std::string& train_path,
                  const std::string& val_path)
      : ExampleStage(ctx) {
    const RunConfig& cfg = ctx.cfg();
    batch_ = cfg.batch().micro_batch_size();
    seq_len_ = cfg.data().seq_len();
    const data::Tokenizer& tok = stage_tokenizer(ctx);
    DatasetOptions o = dataset_options(cfg);
    pad_ = pad_id(tok, o);
    vocab_ = tok.vocab_size();
    PreferenceDataset tr = load_preference_jsonl(train_path, tok, o);
    desc_ = stats_str(train_path, tr.stats);
    train_ = std::move(tr.examples);
    if (!val_path.empty()) {
      PreferenceDataset va = load_preference_jsonl(val_path, tok, o);
      desc_ += "; " + stats_str(val_path, va.stats);
      val_ = std::move(va.examples);
    }
  }
  PairBatch next_batch() {
    std::vector<PreferenceExample> ex;
    for (size_t i : next_indices(train_.size(), batch_)) ex.push_back(train_[i]);
    return pair_batch(collate_preferences(ex, 0, ex.size(), seq_len_, pad_, ctx_.device()));
  }
  // Validation micro-batches (a short last one included) and their pair counts.
  std::vector<PairBatch> val_batches(int64_t max_batches) const {
    std::vector<PairBatch> out;
    for (size_t begin = 0; begin < val_.size() && int64_t(out.size()) < max_batches;
         begin += size_t(batch_)) {
      const size_t count = std::min(size_t(batch_), val_.size() - begin);
      out.push_back(pair_batch(
          collate_preferences(val_, begin, count, seq_len_, pad_, ctx_.device())));
    }
    return out;
  }
  int64_t batch_ = 1, seq_len_ = 0;
  int64_t vocab_ = 0;  // the tokenizer's ids: the real vocabulary, without padded rows
  int32_t pad_ = 0;
  std::vector<PreferenceExample> train_, val_;
  std::string desc_;
};

class RewardStage : public PreferenceStage {
 public:
  RewardStage(train::StageContext& ctx, Learner& policy)
      : PreferenceStage(ctx, ctx.cfg().reward().train_path(), ctx.cfg().reward().val_path()),
        model_(dynamic_cast<models::RewardModel&>(policy.model())) {}

  StepResult run_step(int64_t step, double lr, Learner& policy) override {
    std::vector<double> sums = {0.0, 0.0};  // accuracy, margin (last stage)
    std::vector<MicroBatch> mbs;
    for (int64_t m = 0; m < grad_accum_; ++m) mbs.push_back(micro_batch(next_batch(), m, sums, 1));
    const double loss = policy.forward_backward(mbs, step);
    LOOM_CHECK_T(NonFiniteError, std::isfinite(loss), "train: reward loss is ", loss,
                 " at step ", step, "; hint: lower optimizer.lr or check the data");
    const double norm = policy.step(lr);
    return {loss, norm, reduce_metrics({"accuracy", "margin"}, sums, grad_accum_, policy)};
  }

  Metrics evaluate(Learner& policy, int64_t max_batches) override {
    if (val_.empty()) return {};
    // Weighted by pairs, so a short last batch counts per pair like the others.
    std::vector<double> sums = {0.0, 0.0, 0.0};  // loss, accuracy, margin: sums over pairs
    std::vector<MicroBatch> mbs;
    int64_t pairs = 0;
    for (const PairBatch& b : val_batches(max_batches)) {
      mbs.push_back(micro_batch(b, int64_t(mbs.size()), sums, double(b.pairs)));
      pairs += b.pairs;
    }
    policy.evaluate(mbs);
    policy.from_last_stage(sums);
    const double p = double(pairs);
    return {{"val_loss", sums[2] / p}, {"val_accuracy", sums[0] / p}, {"val_margin", sums[1] / p}};
  }

  std::string describe() const override { return "reward " + desc_; }

 private:
  // The pairwise loss of b; on the last stage adds weight * (accuracy, margin[, loss]) to sums.
  MicroBatch micro_batch(const PairBatch& b, int64_t index, std::vector<double>& sums,
                         double weight) {
    MicroBatch mb{b.ids, b.targets, index, {}};
    mb.objective = [this, last = b.last, n = b.pairs, &sums, weight](const Tensor& h) {
      Tensor r = models::select_last(model_.values_of(h), last);  // (2B)
      Tensor rc = r.narrow(0, 0, n), rr = r.narrow(0, n, n);
      Tensor loss = pairwise_reward_loss(rc, rr);
      RewardMetrics m = reward_metrics(rc.detach(), rr.detach());
      sums[0] += m.accuracy * weight;
      sums[1] += m.mean_margin * weight;
      if (sums.size() > 2) sums[2] += loss.item() * weight;
      return loss;
    };
    return mb;
  }
  models::RewardModel& model_;
};

// DPO and its variants (dpo.loss_type): the loss on sequence log-probs of the policy and, except
// for the reference-free SimPO, of the frozen reference. Log-probs cover the tokenizer's ids only.
class DpoStage : public PreferenceStage {
 public:
  DpoStage(train::StageContext& ctx, Learner& policy)
      : PreferenceStage(ctx, ctx.cfg().dpo().train_path(), ctx.cfg().dpo().val_path()),
        policy_(policy.model()),
        d_(ctx.cfg().dpo()) {
    if (d_.loss_type() != config::DpoConfig::SIMPO) {
      reference_ = ctx.make_model(policy.model().config(), false, d_.reference());
      reference_->eval();
    }
  }

  StepResult run_step(int64_t step, double lr, Learner& policy) override {
    std::vector<PairBatch> batches;
    for (int64_t m = 0; m < grad_accum_; ++m) batches.push_back(next_batch());
    std::vector<Tensor> ref;
    std::vector<double> sums = {0.0, 0.0, 0.0};  // reward accuracy, margin, loss
    std::vector<MicroBatch> mbs = micro_batches(batches, ref, sums, false);
    const double loss = policy.forward_backward(mbs, step);
    LOOM_CHECK_T(NonFiniteError, std::isfinite(loss), "train: DPO loss is ", loss, " at step ",
                 step, "; hint: lower optimizer.lr or dpo.beta");
    const double norm = policy.step(lr);
    sums.pop_back();
    return {loss, norm,
            reduce_metrics({"reward_accuracy", "reward_margin"}, sums, grad_accum_, policy)};
  }

  // Held-out preference accuracy and margin, weighted by pairs (a short last batch included).
  Metrics evaluate(Learner& policy, int64_t max_batches) override {
    if (val_.empty()) return {};
    std::vector<Tensor> ref;
    std::vector<double> sums = {0.0, 0.0, 0.0};
    const std::vector<PairBatch> batches = val_batches(max_batches);
    policy.evaluate(micro_batches(batches, ref, sums, true));
    policy.from_last_stage(sums);
    double pairs = 0;
    for (const PairBatch& b : batches) pairs += double(b.pairs);
    return {{"val_loss", sums[2] / pairs},
            {"val_accuracy", sums[0] / pairs},
            {"val_margin", sums[1] / pairs}};
  }

  std::string describe() const override {
    return "dpo (" + config::DpoConfig::LossType_Name(d_.loss_type()) + ") " + desc_;
  }

 private:
  // The micro-batches of `batches` with the reference's sequence log-probs computed into `ref`
  // first (last stage; none for SimPO); each objective adds (accuracy, margin, loss) to sums,
  // times the batch's pairs when by_pairs, and returns the loss.
  std::vector<MicroBatch> micro_batches(const std::vector<PairBatch>& batches,
                                        std::vector<Tensor>& ref, std::vector<double>& sums,
                                        bool by_pairs) const {
    ref.assign(batches.size(), Tensor());
    std::vector<MicroBatch> mbs;
    for (size_t m = 0; m < batches.size(); ++m) {
      MicroBatch mb{batches[m].ids, batches[m].targets, int64_t(m), {}};
      mb.objective = [this, &ref, m, t = batches[m].targets](const Tensor& h) {
        ref[m] = sequence_logprob(*reference_, h, t);
        return Tensor::scalar(0.0, DType::F32, h.device());
      };
      mbs.push_back(std::move(mb));
    }
    if (reference_) train::forward_only(*reference_, ctx_.grid(), mbs);
    for (size_t m = 0; m < batches.size(); ++m) {
      const double w = by_pairs ? double(batches[m].pairs) : 1.0;
      mbs[m].objective = [this, &ref, &sums, m, w, n = batches[m].pairs,
                          t = batches[m].targets](const Tensor& h) {
        DpoOutput d = loss(sequence_logprob(policy_, h, t), ref[m], t, n);
        sums[0] += d.accuracy * w;
        sums[1] += d.mean_margin * w;
        sums[2] += d.loss.item() * w;
        return d.loss;
      };
    }
    return mbs;
  }

  // dpo.loss_type's loss of the (2B) sequence log-probs lp (chosen rows, then rejected).
  DpoOutput loss(const Tensor& lp, const Tensor& ref, const Tensor& targets, int64_t n) const {
    const Tensor pc = lp.narrow(0, 0, n), pr = lp.narrow(0, n, n);
    if (d_.loss_type() == config::DpoConfig::SIMPO) {
      Tensor len = sum(label_mask(targets, lp.dtype()), {1});  // response tokens (2B)
      return simpo_loss(pc, pr, len.narrow(0, 0, n), len.narrow(0, n, n), d_.beta(),
                        d_.simpo_gamma());
    }
    const Tensor rc = ref.narrow(0, 0, n), rr = ref.narrow(0, n, n);
    switch (d_.loss_type()) {
      case config::DpoConfig::IPO: return ipo_loss(pc, pr, rc, rr, d_.beta());
      case config::DpoConfig::CDPO:
        return cdpo_loss(pc, pr, rc, rr, d_.beta(), d_.label_smoothing());
      default: return dpo_loss(pc, pr, rc, rr, d_.beta());
    }
  }

  // Sum of the response tokens' log-probs per row over the tokenizer's ids: hidden states h,
  // targets (B,T) -> (B).
  Tensor sequence_logprob(const models::GPT& m, const Tensor& h, const Tensor& targets) const {
    return sum(m.token_logprobs(h, targets, 1.0, vocab_), {1});
  }
  models::GPT& policy_;
  config::DpoConfig d_;
  std::unique_ptr<models::GPT> reference_;  // null for SimPO
};

}  // namespace

std::unique_ptr<train::Stage> make_stage(train::StageContext& ctx, Learner& policy) {
  switch (ctx.cfg().stage()) {
    case RunConfig::SFT: return std::make_unique<SftStage>(ctx);
    case RunConfig::REWARD: return std::make_unique<RewardStage>(ctx, policy);
    case RunConfig::DPO: return std::make_unique<DpoStage>(ctx, policy);
    case RunConfig::PPO: return std::make_unique<PpoStage>(ctx, policy);
    default: return nullptr;
  }
}

}  // namespace loom::rlhf

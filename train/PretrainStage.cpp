// PretrainStage (see PretrainStage.h).
#include "train/PretrainStage.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "config/ConfigDefaults.h"
#include "core/util/Check.h"
#include "data/TokenDataset.h"

namespace loom::train {

using nlohmann::json;

PretrainStage::PretrainStage(StageContext& ctx) : ctx_(ctx) {
  const config::RunConfig& cfg = ctx.cfg();
  grad_accum_ = config::grad_accum_steps(cfg);
  data::DataLoaderOptions lo;
  lo.batch_size = cfg.batch().micro_batch_size();
  lo.seq_len = cfg.data().seq_len();
  lo.seed = cfg.seed();
  lo.shuffle = cfg.data().shuffle();
  lo.rank = ctx.dp_rank();  // each DP rank reads its own windows
  lo.world = ctx.dp_size();
  train_ = std::make_unique<data::DataLoader>(
      std::make_shared<data::TokenDataset>(cfg.data().train_path()), lo);
  train_->check_vocab(cfg.model().vocab_size());
  if (!cfg.data().val_path().empty()) {
    lo.shuffle = false;
    lo.rank = 0;  // every rank evaluates the whole set (identical parameters, identical result)
    lo.world = 1;
    lo.drop_last = false;
    val_ = std::make_unique<data::DataLoader>(
        std::make_shared<data::TokenDataset>(cfg.data().val_path()), lo);
    val_->check_vocab(cfg.model().vocab_size());
  }
}

std::vector<pipeline::MicroBatch> PretrainStage::next_micro_batches(data::DataLoader& loader,
                                                                    int64_t n) {
  std::vector<pipeline::MicroBatch> out;
  for (int64_t i = 0; i < n; ++i) {
    data::Batch b = loader.next();
    pipeline::MicroBatch mb;
    mb.ids = b.inputs.to(ctx_.device());
    mb.targets = b.targets.to(ctx_.device());
    mb.index = i;
    out.push_back(std::move(mb));
  }
  return out;
}

StepResult PretrainStage::run_step(int64_t step, double lr, Learner& policy) {
  const double loss = policy.forward_backward(next_micro_batches(*train_, grad_accum_), step);
  LOOM_CHECK_T(NonFiniteError, std::isfinite(loss), "train: loss is ", loss, " at step ", step,
               "; hint: lower optimizer.lr or check the data");
  return {loss, policy.step(lr), {}};
}

Metrics PretrainStage::evaluate(Learner& policy, int64_t max_batches) {
  if (!val_) return {};
  val_->set_state({0, 0});  // the same batches every time
  const int64_t n = std::min<int64_t>(max_batches, val_->batches_per_epoch());
  LOOM_CHECK_T(DataError, n > 0, "eval: the validation set ", ctx_.cfg().data().val_path(),
               " has no full window of seq_len+1 tokens");
  const double v = policy.evaluate(next_micro_batches(*val_, n));
  return {{"val_loss", v}, {"val_ppl", std::exp(v)}};
}

std::string PretrainStage::describe() const {
  return "pretrain " + ctx_.cfg().data().train_path();
}

std::string PretrainStage::state() const {
  data::LoaderState ls = train_->state();
  // position counts this DP rank's windows; "dp" lets a run with another DP size convert it.
  json j;
  j["loader"] = {{"epoch", ls.epoch}, {"position", ls.position}, {"dp", ctx_.dp_size()}};
  return j.dump();
}

void PretrainStage::set_state(const std::string& trainer_state_json, const std::string& source) {
  const json state = json::parse(trainer_state_json);
  const json loader = state.value("loader", json::object());
  const int64_t epoch = loader.value("epoch", int64_t(0));
  const int64_t position = loader.value("position", int64_t(0));
  // Windows are dealt round-robin over DP ranks, so a per-rank position p at DP size d is the
  // global position p * d: convert it for this run's DP size.
  const int64_t saved_dp = loader.value("dp", int64_t(1)), dp = ctx_.dp_size();
  const int64_t global = position * saved_dp;
  LOOM_CHECK_T(CheckpointError, global % dp == 0, "checkpoint ", source, ": its data position (",
               global, " windows over ", saved_dp, " data-parallel ranks) does not split over ",
               dp, " data-parallel ranks; hint: resume with a DP size that divides ", global);
  train_->set_state({epoch, global / dp});
}

}  // namespace loom::train

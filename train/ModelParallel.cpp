// ModelParallel (see ModelParallel.h).
#include "train/ModelParallel.h"

#include <cmath>

#include "core/autograd/GradMode.h"
#include "config/ConfigDefaults.h"
#include "parallel/data/GradBucketReducer.h"
#include "parallel/tensor/TensorParallelGradNorm.h"
#include "train/Trainer.h"

namespace loom::train {

using config::RunConfig;

ModelParallel::ModelParallel(const RunConfig& cfg, ProcessGrid& grid, const models::GPT& full)
    : cfg_(cfg), grid_(grid) {
  const auto& par = cfg.parallel();
  LOOM_CHECK_T(ConfigError, cfg.stage() == RunConfig::PRETRAIN, "train: parallel.tp=", par.tp(),
               " pp=", par.pp(), " runs stage PRETRAIN only so far; expected parallel.tp=1 and "
               "pp=1 for stage ", RunConfig::Stage_Name(cfg.stage()));
  schedule_ = par.schedule() == config::ParallelConfig::GPIPE ? pipeline::ScheduleKind::GPipe
                                                              : pipeline::ScheduleKind::OneFOneB;
  model_ = std::make_unique<pipeline::ParallelGpt>(gpt_config_from(cfg),
                                                   cfg.model().vocab_size(), grid.tp_group(),
                                                   grid.pp_rank(), grid.pp_size(), cfg.seed());
  std::map<std::string, Tensor> source;
  for (const auto& [name, p] : full.named_parameters()) source[name] = p.detach();
  model_->load_from(source);
  tied_ = std::make_unique<pipeline::TiedGradSync>(grid.pp_group());
  // Every DP rank of this (tp, pp) position holds the same pieces in the same order, so the
  // reducer's buckets and their collective sequence match across the DP group. Under ZeRO-1 the
  // optimizer reduce-scatters the gradients itself.
  if (grid.dp_size() > 1 && par.zero_stage() == 0)
    reducer_ = std::make_unique<GradBucketReducer>(model_->parameters(), grid.dp_group());
}

ModelParallel::~ModelParallel() = default;

pipeline::PipelineP2P& ModelParallel::p2p_for(const Shape& ids_shape) {
  LOOM_INTERNAL_ASSERT(ids_shape.size() == 2);
  auto& slot = p2p_[ids_shape];
  if (!slot)
    slot = std::make_unique<pipeline::PipelineP2P>(
        grid_.pp_group(), model_->activation_shape(ids_shape[0], ids_shape[1]), DType::F32);
  return *slot;
}

double ModelParallel::forward_backward(const std::vector<pipeline::MicroBatch>& micro_batches,
                                       int64_t step) {
  LOOM_INTERNAL_ASSERT(!micro_batches.empty());
  model_->set_step(step);  // keys the dropout masks (with each micro-batch's index)
  const int64_t M = int64_t(micro_batches.size());
  pipeline::PipelineHooks hooks;
  // DP buckets are reduced during the last micro-batch's backward only (the earlier ones just
  // accumulate), so their all-reduces overlap the rest of that backward on this stage.
  if (reducer_) hooks.before_backward = [&](int64_t mb) { reducer_->set_sync(mb == M - 1); };
  pipeline::PipelineResult r = pipeline::run_pipeline(
      schedule_, *model_, p2p_for(micro_batches.front().ids.shape()), micro_batches, hooks);
  // Grads become DP averages first; the tied sum of the two copies' averages is the DP average
  // of their sums. A piece without a gradient this step gets zeros rather than hanging finish().
  // (ZeRO-1: no reducer; the optimizer's reduce-scatter averages the tied sums.)
  if (reducer_) reducer_->finish();
  if (cfg_.model().tie_embeddings() && tied_->holds_weight())
    tied_->all_reduce(model_->tied_weight());
  double loss = r.loss;
  if (grid_.dp_size() > 1) {
    Tensor t = Tensor::from_vector<double>({loss}, {1});
    grid_.dp_group().all_reduce(t);
    loss = t.item() * (1.0 / double(grid_.dp_size()));
  }
  return loss;
}

ZeroNormOptions ModelParallel::zero_norm_options() const {
  ZeroNormOptions o;
  o.model_parallel = &grid_.mp_group();
  for (const pipeline::ParallelParam& p : model_->pieces())
    if (!p.owner) o.not_counted.insert(p.name);
  return o;
}

double ModelParallel::clip_gradients(double clip) {
  const double norm = tp::grad_norm(model_->norm_sharded(), model_->norm_replicated(),
                                    grid_.tp_rank(), grid_.mp_group());
  // The single-process rule (optim::clip_grad_norm) applied to every piece, the last stage's
  // copy of a tied table included.
  if (clip <= 0.0 || !std::isfinite(norm)) return norm;
  const double coef = clip / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  NoGradGuard g;
  for (const Tensor& p : model_->parameters()) {
    Tensor grad = p.grad();
    if (grad.defined()) grad.mul_(coef);
  }
  return norm;
}

double ModelParallel::evaluate(const std::vector<pipeline::MicroBatch>& batches) {
  if (batches.empty()) return 0.0;
  // Batches of one shape share a pipeline pass; a short last batch gets a pass of its own.
  double sum = 0.0;
  size_t i = 0;
  while (i < batches.size()) {
    size_t j = i;
    while (j < batches.size() && batches[j].ids.shape() == batches[i].ids.shape()) ++j;
    std::vector<pipeline::MicroBatch> run(batches.begin() + long(i), batches.begin() + long(j));
    sum += pipeline::run_pipeline_eval(*model_, p2p_for(run.front().ids.shape()), run) *
           double(run.size());
    i = j;
  }
  return sum / double(batches.size());
}

void ModelParallel::add_pieces(io::Checkpoint& ck,
                               const std::map<std::string, optim::ParamState>& states) const {
  if (grid_.dp_rank() != 0) return;  // DP replicas hold identical pieces
  for (const pipeline::ParallelParam& p : model_->pieces()) {
    if (!p.owner) continue;
    ck.pieces["model/" + p.name] = {p.tensor.detach(), p.spec};
    auto it = states.find(p.name);
    if (it == states.end()) continue;
    for (const auto& [key, buf] : it->second.buffers)
      ck.pieces["optim/" + key + "/" + p.name] = {buf, p.spec};
  }
}

Tensor ModelParallel::fit_logical(const std::string& name, const Tensor& t,
                                  const ShardSpec& spec) const {
  Tensor fitted = fit_vocab_rows(name, t, spec.logical, cfg_.model().vocab_size());
  LOOM_CHECK_T(CheckpointError, fitted.shape() == spec.logical, name, ": expected shape ",
               spec.logical, ", got ", t.shape(),
               "; hint: the model section of the config must match the checkpoint's");
  return fitted;
}

std::map<std::string, optim::ParamState> ModelParallel::load(const io::Checkpoint& ck,
                                                             const std::string& dir) {
  std::map<std::string, Tensor> source;
  std::string missing;
  for (const pipeline::ParallelParam& p : model_->pieces()) {
    auto it = ck.tensors.find("model/" + p.name);
    if (it == ck.tensors.end())
      missing += "\n  missing tensor model/" + p.name;
    else
      source[p.name] = it->second;
  }
  LOOM_CHECK_T(CheckpointError, missing.empty(), "checkpoint ", dir,
               " does not fit this model:", missing);
  model_->load_from(source);
  std::map<std::string, optim::ParamState> states;
  for (const pipeline::ParallelParam& p : model_->pieces()) {
    const std::string suffix = "/" + p.name;
    for (const auto& [key, t] : ck.tensors) {
      if (key.rfind("optim/", 0) != 0 || key.size() <= suffix.size() + 6 ||
          key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string buf = key.substr(6, key.size() - suffix.size() - 6);
      if (buf.find('/') != std::string::npos) continue;  // a longer name ending in this one
      states[p.name].buffers[buf] = extract_shard(fit_logical(key, t, p.spec), p.spec);
    }
  }
  return states;
}

}  // namespace loom::train

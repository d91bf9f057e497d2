// Learner (see Learner.h).
#include "train/Learner.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "optim/AdamW.h"
#include "optim/SGD.h"
#include "optim/ZeroAdamW.h"

namespace loom::train {

using config::RunConfig;
using nlohmann::json;

namespace {

// Whether parameter `name` gets weight decay under cfg.optimizer's no_decay_* switches.
bool decays(const config::OptimizerConfig& o, const std::string& name, const Tensor& p) {
  bool is_embedding = name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0;
  bool is_norm = name.find(".ln_") != std::string::npos || name.rfind("ln_f.", 0) == 0;
  bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  if (is_bias) return !o.no_decay_bias();
  if (is_norm) return !o.no_decay_norm();
  if (is_embedding) return !o.no_decay_embedding();
  return p.dim() >= 2;
}

// A logical tensor with another vocabulary padding fitted to `want` rows: the first `real` rows
// carry over, padded rows are zero. Anything else: `t` unchanged.
Tensor fit_rows(const Tensor& t, const Shape& want, int64_t real) {
  if (t.shape() == want || t.dim() != 2 || want.size() != 2 || t.size(1) != want[1] ||
      t.size(0) < real || want[0] < real)
    return t;
  NoGradGuard g;
  Tensor out = Tensor::zeros(want, t.dtype(), t.device());
  out.narrow(0, 0, real).copy_(t.narrow(0, 0, real));
  return out;
}

// The logical tensor `t` for parameter p, fitted to p's logical shape (vocabulary tables), or
// undefined with a line added to `problems`.
Tensor fitted(const nn::Parameter& p, const Tensor& t, const std::string& key,
              std::string& problems) {
  const Shape& want = p.meta.spec.logical;
  Tensor f = p.meta.zero_rows_from >= 0 ? fit_rows(t, want, p.meta.zero_rows_from) : t;
  if (f.shape() == want) return f;
  problems += "\n  " + key + ": expected shape " + shape_str(want) + ", got " +
              shape_str(t.shape());
  return Tensor();
}

std::unique_ptr<optim::Optimizer> make_optimizer(const RunConfig& cfg, const nn::Module& model,
                                                 ProcessGrid& grid) {
  const auto& o = cfg.optimizer();
  auto params = model.named_parameters();
  auto filter = [o](const std::string& name, const Tensor& p) { return decays(o, name, p); };
  if (o.type() == config::OptimizerConfig::SGD) {
    optim::SGDOptions so;
    so.lr = o.lr();
    so.momentum = o.momentum();
    so.nesterov = o.nesterov();
    so.weight_decay = o.weight_decay();
    so.decay_filter = filter;
    return std::make_unique<optim::SGD>(params, so);
  }
  optim::AdamWOptions ao;
  ao.lr = o.lr();
  ao.beta1 = o.beta1();
  ao.beta2 = o.beta2();
  ao.eps = o.eps();
  ao.weight_decay = o.weight_decay();
  ao.decay_filter = filter;
  if (cfg.parallel().zero_stage() == 1)
    return std::make_unique<optim::ZeroAdamW>(
        optim::make_decay_groups(params, o.lr(), o.weight_decay(), filter), ao, grid.dp_group());
  return std::make_unique<optim::AdamW>(params, ao);
}

std::unique_ptr<optim::LossScaler> make_scaler(const RunConfig& cfg, ProcessGrid& grid) {
  if (!cfg.has_loss_scale()) return nullptr;
  const config::LossScaleConfig& l = cfg.loss_scale();
  optim::LossScalerOptions o;
  o.init_scale = l.init_scale();
  o.growth_factor = l.growth_factor();
  o.backoff_factor = l.backoff_factor();
  o.growth_interval = l.growth_interval();
  o.dynamic = l.dynamic();
  o.min_scale = std::min(1.0, o.init_scale);
  optim::FoundInfReducer reduce;
  if (grid.world().size() > 1)  // every rank skips the same steps
    reduce = [&grid](const Tensor& found_inf) {
      Tensor host = found_inf.to(Device::cpu());
      grid.world().all_reduce(host, ReduceOp::Max);
      Tensor(found_inf).copy_(host);
    };
  return std::make_unique<optim::LossScaler>(o, std::move(reduce));
}

}  // namespace

void load_pieces(nn::Module& model, const std::map<std::string, Tensor>& logical,
                 const std::string& source, const std::vector<std::string>& optional) {
  std::string problems;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (piece, its values)
  for (const nn::Parameter& p : model.parameter_list()) {
    auto it = logical.find(p.name);
    if (it == logical.end()) {
      if (std::find(optional.begin(), optional.end(), p.name) == optional.end())
        problems += "\n  missing tensor " + p.name;
      continue;
    }
    Tensor t = fitted(p, it->second, p.name, problems);
    if (t.defined()) copies.emplace_back(p.tensor, extract_shard(t, p.meta.spec));
  }
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", source,
               " does not fit this model:", problems,
               "\n  hint: the model section of the config must match the checkpoint's");
  NoGradGuard g;
  for (auto& [piece, value] : copies) piece.detach().copy_(value.to(piece.device()));
}

std::map<std::string, Tensor> tensors_under(const io::Checkpoint& ck, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  const std::string head = prefix + "/";
  for (const auto& [key, t] : ck.tensors)
    if (key.rfind(head, 0) == 0) out[key.substr(head.size())] = t;
  return out;
}

Learner::Learner(std::unique_ptr<models::GPT> model, const RunConfig& cfg, ProcessGrid& grid)
    : cfg_(cfg), grid_(grid), model_(std::move(model)) {
  schedule_ = cfg.parallel().schedule() == config::ParallelConfig::GPIPE
                  ? pipeline::ScheduleKind::GPipe
                  : pipeline::ScheduleKind::OneFOneB;
  opt_ = make_optimizer(cfg, *model_, grid);
  sync_ = std::make_unique<GradSync>(*model_, model_->tied_weight(),
                                     model_->config().tie_embeddings, grid);
  scaler_ = make_scaler(cfg, grid);
}

Learner::~Learner() = default;

double Learner::forward_backward(const std::vector<pipeline::MicroBatch>& micro_batches,
                                 int64_t step) {
  LOOM_INTERNAL_ASSERT(!micro_batches.empty());
  model_->set_step(step);
  const int64_t M = int64_t(micro_batches.size());
  pipeline::PipelineHooks hooks;
  hooks.before_backward = [&](int64_t m) { sync_->before_backward(m, M); };
  if (scaler_) hooks.backward_scale = scaler_->scale();
  const Shape& ids = micro_batches.front().ids.shape();
  pipeline::PipelineP2P p2p(grid_.pp_group(), model_->activation_shape(ids[0], ids[1]),
                            DType::F32);
  pipeline::PipelineResult r = pipeline::run_pipeline(schedule_, *model_, p2p, micro_batches, hooks);
  std::vector<double> loss = {r.loss};
  dp_sum(loss);
  return loss[0] / double(grid_.dp_size());
}

double Learner::step(double lr) {
  sync_->finish();
  if (scaler_ && scaler_->unscale_(*opt_)) {  // overflow on some rank: every rank skips
    scaler_->update();
    opt_->zero_grad();
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double norm = sync_->clip(cfg_.optimizer().grad_clip());
  // The norm is the same on every rank, so every rank stops here together: no step is taken
  // (and so no non-finite state can be checkpointed).
  LOOM_CHECK_T(NonFiniteError, std::isfinite(norm), "train: the gradient norm is ", norm,
               "; no update was made; hint: lower optimizer.lr, enable loss scaling or check the "
               "data");
  opt_->set_lr(lr);
  opt_->step();
  if (scaler_) scaler_->update();
  opt_->zero_grad();
  return norm;
}

double Learner::evaluate(const std::vector<pipeline::MicroBatch>& micro_batches) {
  return forward_only(*model_, grid_, micro_batches);
}

double forward_only(models::GPT& model, ProcessGrid& grid,
                    const std::vector<pipeline::MicroBatch>& micro_batches) {
  if (micro_batches.empty()) return 0.0;
  // Batches of one shape share a pipeline pass; a short last batch gets a pass of its own.
  double sum = 0.0;
  size_t i = 0;
  while (i < micro_batches.size()) {
    size_t j = i;
    const Shape& ids = micro_batches[i].ids.shape();
    while (j < micro_batches.size() && micro_batches[j].ids.shape() == ids) ++j;
    std::vector<pipeline::MicroBatch> run(micro_batches.begin() + long(i),
                                          micro_batches.begin() + long(j));
    pipeline::PipelineP2P p2p(grid.pp_group(), model.activation_shape(ids[0], ids[1]),
                              DType::F32);
    sum += pipeline::run_pipeline_eval(model, p2p, run) * double(run.size());
    i = j;
  }
  return sum / double(micro_batches.size());
}

void Learner::dp_sum(std::vector<double>& v) const {
  if (grid_.dp_size() == 1 || v.empty()) return;
  Tensor t = Tensor::from_vector<double>(v, {int64_t(v.size())});
  grid_.dp_group().all_reduce(t);
  v = t.to_vector<double>();
}

void Learner::from_last_stage(std::vector<double>& v) const {
  if (grid_.pp_size() == 1 || v.empty()) return;
  Tensor t = Tensor::from_vector<double>(v, {int64_t(v.size())});
  grid_.pp_group().broadcast(t, grid_.pp_size() - 1);
  v = t.to_vector<double>();
}

void Learner::save(io::Checkpoint& ck, const std::string& prefix, const std::string& optim_prefix,
                   json& meta) {
  const std::map<std::string, optim::ParamState> states = opt_->export_states();  // collective
  meta["optimizer_steps"] = opt_->step_count();
  meta["param_steps"] = json::object();
  for (const auto& [name, st] : states) meta["param_steps"][name] = st.step;
  if (grid_.dp_rank() != 0) return;  // DP replicas hold identical pieces
  for (const nn::Parameter& p : model_->parameter_list()) {
    if (!p.meta.owner) continue;
    ck.pieces[prefix + "/" + p.name] = {p.tensor.detach(), p.meta.spec};
    auto it = states.find(p.name);
    if (it == states.end()) continue;
    for (const auto& [key, buf] : it->second.buffers)
      ck.pieces[optim_prefix + "/" + key + "/" + p.name] = {buf, p.meta.spec};
  }
}

void Learner::load(const io::Checkpoint& ck, const std::string& prefix,
                   const std::string& optim_prefix, const json& meta, const std::string& source,
                   bool weights_only) {
  load_pieces(*model_, tensors_under(ck, prefix), source);
  if (weights_only) return;
  const int64_t opt_steps = meta.value("optimizer_steps", int64_t(0));
  const json steps = meta.value("param_steps", json::object());
  std::map<std::string, optim::ParamState> states;
  std::string problems;
  for (const nn::Parameter& p : model_->parameter_list()) {
    const std::string tail = "/" + p.name;
    for (const auto& [key, t] : ck.tensors) {
      if (key.rfind(optim_prefix + "/", 0) != 0 || key.size() <= optim_prefix.size() + tail.size() ||
          key.compare(key.size() - tail.size(), tail.size(), tail) != 0)
        continue;
      const std::string buf =
          key.substr(optim_prefix.size() + 1, key.size() - tail.size() - optim_prefix.size() - 1);
      if (buf.find('/') != std::string::npos) continue;  // a longer name ending in this one
      Tensor f = fitted(p, t, key, problems);
      if (f.defined()) states[p.name].buffers[buf] = extract_shard(f, p.meta.spec).to(p.tensor.device());
    }
    // A name missing from param_steps was saved by another TP x PP rank: it took every step.
    if (states.count(p.name)) states[p.name].step = steps.value(p.name, opt_steps);
    // A parameter the saved optimizer updated must come back with its whole state (a missing
    // buffer would silently restart its moments at zero).
    if (steps.value(p.name, int64_t(0)) > 0)
      for (const std::string& key : opt_->state_keys())
        if (!states.count(p.name) || !states[p.name].buffers.count(key))
          problems += "\n  missing tensor " + optim_prefix + "/" + key + "/" + p.name;
  }
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", source,
               " does not fit this model's optimizer state:", problems);
  opt_->import_states(std::move(states), opt_steps);
}

}  // namespace loom::train

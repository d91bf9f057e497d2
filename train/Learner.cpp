// Learner (see Learner.h).
#include "train/Learner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"
#include "io/CheckpointReader.h"
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

// The piece parameter p holds of tensor `key` of src (logical shape and dtype `info`), fitted
// to p's logical shape: a vocabulary table saved with another padding keeps its real rows and
// gets zero padded rows, reading only the real rows p holds. Undefined, with a line added to
// `problems` (naming `label`), when the shapes do not fit.
Tensor read_fitted(const io::TensorSource& src, const io::TensorInfo& info, const std::string& key,
                   const std::string& label, const nn::Parameter& p, std::string& problems) {
  const ShardSpec& s = p.meta.spec;
  if (info.shape == s.logical) return src.read(key, s);
  const int64_t real = p.meta.zero_rows_from;
  const bool fits = real >= 0 && info.shape.size() == 2 && s.logical.size() == 2 &&
                    info.shape[1] == s.logical[1] && info.shape[0] >= real &&
                    s.logical[0] >= real;
  if (!fits) {
    problems += "\n  " + label + ": expected shape " + shape_str(s.logical) + ", got " +
                shape_str(info.shape);
    return Tensor();
  }
  // A vocabulary table's piece holds whole rows (init_piece asserts the same).
  LOOM_INTERNAL_ASSERT(s.view == s.logical && (s.is_whole() || s.dim == 0),
                       "load: a padded vocabulary table needs a row-range piece, got ", s.str());
  const int64_t first = s.is_whole() ? 0 : s.offset;
  const int64_t rows = s.local_shape()[0];
  const int64_t carried = std::clamp<int64_t>(real - first, 0, rows);
  NoGradGuard g;
  Tensor out = Tensor::zeros(s.local_shape(), info.dtype);
  if (carried > 0)
    out.narrow(0, 0, carried)
        .copy_(src.read(key, ShardSpec::row_range(info.shape, first, first + carried)));
  return out;
}

// (parameter piece, its values read from a source)
using PieceCopies = std::vector<std::pair<Tensor, Tensor>>;

// This rank's piece of every parameter of `model` (only the trainable ones when trainable_only),
// read from the tensors "<prefix><name>" of src; a line in `problems` for each missing (unless
// optional) or misshapen one.
PieceCopies read_pieces(nn::Module& model, const io::TensorSource& src, const std::string& prefix,
                        const std::vector<std::string>& optional, std::string& problems,
                        bool trainable_only = false) {
  PieceCopies copies;
  for (const nn::Parameter& p : model.parameter_list()) {
    if (trainable_only && !p.meta.trainable) continue;
    const std::string key = prefix + p.name;
    const std::optional<io::TensorInfo> info = src.info(key);
    if (!info) {
      if (std::find(optional.begin(), optional.end(), p.name) == optional.end())
        problems += "\n  missing tensor " + p.name;
      continue;
    }
    Tensor t = read_fitted(src, *info, key, p.name, p, problems);
    if (t.defined()) copies.emplace_back(p.tensor, t);
  }
  return copies;
}

void copy_pieces(const PieceCopies& copies) {
  NoGradGuard g;
  for (const auto& [piece, value] : copies) piece.detach().copy_(value.to(piece.device()));
}

constexpr const char* kModelHint =
    "\n  hint: the model section of the config must match the checkpoint's";

std::unique_ptr<optim::Optimizer> make_optimizer(const RunConfig& cfg, const nn::Module& model,
                                                 ProcessGrid& grid) {
  const auto& o = cfg.optimizer();
  std::vector<nn::NamedTensor> params;  // frozen parameters (LoRA's base) get no state
  for (nn::Parameter& p : model.trainable_parameter_list())
    params.emplace_back(std::move(p.name), std::move(p.tensor));
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

void load_pieces(nn::Module& model, const io::TensorSource& src, const std::string& prefix,
                 const std::vector<std::string>& optional) {
  std::string problems;
  PieceCopies copies = read_pieces(model, src, prefix, optional, problems);
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", src.where(),
               " does not fit this model:", problems, kModelHint);
  copy_pieces(copies);
}

Learner::Learner(std::unique_ptr<models::GPT> model, const RunConfig& cfg, ProcessGrid& grid)
    : cfg_(cfg), grid_(grid), model_(std::move(model)) {
  schedule_ = cfg.parallel().schedule() == config::ParallelConfig::GPIPE
                  ? pipeline::ScheduleKind::GPipe
                  : pipeline::ScheduleKind::OneFOneB;
  opt_ = make_optimizer(cfg, *model_, grid);
  // A LoRA model's tied table is frozen (no gradient): nothing to sum over the pipeline ends.
  sync_ = std::make_unique<GradSync>(*model_, model_->tied_weight(),
                                     model_->config().tie_embeddings && !model_->has_lora(), grid);
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

void Learner::dp_reduce(std::vector<double>& v, ReduceOp op) const {
  if (grid_.dp_size() == 1 || v.empty()) return;
  Tensor t = Tensor::from_vector<double>(v, {int64_t(v.size())});
  grid_.dp_group().all_reduce(t, op);
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
  // DP replicas hold identical pieces: DP rank 0 writes them, and the optimizer state unless the
  // optimizer shards it (then each rank writes the buffers export_states left it).
  const bool model_writer = grid_.dp_rank() == 0;
  if (!model_writer && !opt_->shards_state()) return;
  // Frozen parameters (LoRA's base, from init_from) are not saved: the adapters alone are.
  for (const nn::Parameter& p : model_->trainable_parameter_list()) {
    if (!p.meta.owner) continue;
    if (model_writer) ck.pieces[prefix + "/" + p.name] = {p.tensor.detach(), p.meta.spec};
    auto it = states.find(p.name);
    if (it == states.end()) continue;
    for (const auto& [key, buf] : it->second.buffers)
      ck.pieces[optim_prefix + "/" + key + "/" + p.name] = {buf, p.meta.spec};
  }
}

namespace {

// The buffer names "<optim_prefix>/<buffer>/<name>" of src holds for parameter `name`.
std::vector<std::string> buffers_of(const io::CheckpointReader& src,
                                    const std::string& optim_prefix, const std::string& name) {
  std::vector<std::string> out;
  const std::string head = optim_prefix + "/", tail = "/" + name;
  for (const std::string& key : src.names()) {
    if (key.rfind(head, 0) != 0 || key.size() <= head.size() + tail.size() ||
        key.compare(key.size() - tail.size(), tail.size(), tail) != 0)
      continue;
    const std::string buf = key.substr(head.size(), key.size() - tail.size() - head.size());
    if (buf.find('/') == std::string::npos) out.push_back(buf);  // else a longer name ending so
  }
  return out;
}

}  // namespace

std::map<std::string, optim::ParamState> Learner::read_states(const io::CheckpointReader& ck,
                                                              const std::string& optim_prefix,
                                                              const json& meta,
                                                              std::string& problems) const {
  const int64_t opt_steps = meta.value("optimizer_steps", int64_t(0));
  const json steps = meta.value("param_steps", json::object());
  std::map<std::string, optim::ParamState> states;
  for (const nn::Parameter& p : model_->trainable_parameter_list()) {
    for (const std::string& buf : buffers_of(ck, optim_prefix, p.name)) {
      const std::string key = optim_prefix + "/" + buf + "/" + p.name;
      Tensor f = read_fitted(ck, *ck.info(key), key, key, p, problems);
      if (f.defined()) states[p.name].buffers[buf] = f.to(p.tensor.device());
    }
    // A name missing from param_steps was saved by another TP x PP rank: it took every step.
    if (states.count(p.name)) states[p.name].step = steps.value(p.name, opt_steps);
    // D13: a parameter the saved optimizer updated must come back with its whole state (a missing
    // buffer would silently restart its moments at zero).
    if (steps.value(p.name, int64_t(0)) > 0)
      for (const std::string& key : opt_->state_keys())
        if (!states.count(p.name) || !states[p.name].buffers.count(key))
          problems += "\n  missing tensor " + optim_prefix + "/" + key + "/" + p.name;
  }
  return states;
}

void Learner::load(const io::CheckpointReader& ck, const std::string& prefix,
                   const std::string& optim_prefix, const json& meta, bool weights_only) {
  std::string problems;
  // The trained parameters: all of them, or a LoRA model's adapters (its base is init_from's).
  PieceCopies copies =
      read_pieces(*model_, ck, prefix + "/", {}, problems, /*trainable_only=*/true);
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", ck.where(),
               " does not fit this model:", problems, kModelHint);
  if (weights_only) {
    copy_pieces(copies);
    return;
  }
  std::map<std::string, optim::ParamState> states = read_states(ck, optim_prefix, meta, problems);
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", ck.where(),
               " does not fit this model's optimizer state:", problems);
  copy_pieces(copies);
  opt_->import_states(std::move(states), meta.value("optimizer_steps", int64_t(0)));
}

}  // namespace loom::train

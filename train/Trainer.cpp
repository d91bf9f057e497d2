// Trainer (see Trainer.h).
#include "train/Trainer.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/util/Logging.h"
#include "data/TokenDataset.h"
#include "launch/config/ConfigDefaults.h"
#include "launch/config/ConfigLoader.h"
#include "optim/AdamW.h"
#include "optim/ClipGradNorm.h"
#include "optim/SGD.h"
#include "train/HfConvert.h"

namespace loom::train {

using config::RunConfig;
using nlohmann::json;

models::GPTConfig gpt_config_from(const RunConfig& cfg) {
  const auto& m = cfg.model();
  models::GPTConfig g;
  g.n_layer = m.n_layer();
  g.n_head = m.n_head();
  g.n_embd = m.n_embd();
  g.vocab_size = config::padded_vocab_size(cfg);
  g.block_size = m.block_size();
  g.dropout = m.dropout();
  g.bias = m.bias();
  g.tie_embeddings = m.tie_embeddings();
  g.init_std = m.init_std();
  return g;
}

Device device_from(const RunConfig& cfg) {
  return cfg.device() == RunConfig::CUDA ? Device::cuda(0) : Device::cpu();
}

void add_model_tensors(Checkpoint& ck, const models::GPT& model) {
  for (const auto& [name, p] : model.named_parameters()) ck.tensors["model/" + name] = p.detach();
}

void load_model_tensors(const Checkpoint& ck, models::GPT& model, const std::string& source) {
  std::string problems;
  auto params = model.named_parameters();
  for (const auto& [name, p] : params) {
    auto it = ck.tensors.find("model/" + name);
    if (it == ck.tensors.end()) {
      problems += "\n  missing tensor model/" + name;
    } else if (it->second.shape() != p.shape()) {
      problems += "\n  model/" + name + ": expected shape " + shape_str(p.shape()) + ", got " +
                  shape_str(it->second.shape());
    }
  }
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", source,
               " does not fit this model:", problems,
               "\n  hint: the model section of the config must match the checkpoint's");
  NoGradGuard g;
  for (const auto& [name, p] : params) p.detach().copy_(ck.tensors.at("model/" + name));
}

Trainer::Trainer(const RunConfig& cfg)
    : cfg_(cfg), device_(device_from(cfg)), init_gen_(cfg.seed()) {
  LOOM_CHECK_T(ConfigError, cfg.dtype() == RunConfig::F32,
               "train: dtype=", RunConfig::DType_Name(cfg.dtype()),
               " is not supported by this build's trainer yet; expected F32");
  grad_accum_ = config::grad_accum_steps(cfg);
  model_ = std::make_unique<models::GPT>(gpt_config_from(cfg), init_gen_, DType::F32, device_);
  if (!cfg.init_from().empty()) init_weights_from(cfg.init_from());
  build_optimizer();

  const auto& s = cfg.schedule();
  schedule_.kind = s.decay() == config::LrScheduleConfig::LINEAR     ? optim::DecayKind::Linear
                   : s.decay() == config::LrScheduleConfig::CONSTANT ? optim::DecayKind::Constant
                                                                     : optim::DecayKind::Cosine;
  schedule_.peak_lr = cfg.optimizer().lr();
  schedule_.min_lr = s.has_min_lr() ? s.min_lr() : s.min_lr_ratio() * cfg.optimizer().lr();
  schedule_.warmup_steps = s.warmup_steps();
  schedule_.total_steps = s.decay_steps() > 0 ? s.decay_steps() : cfg.max_steps();
  schedule_.validate();

  data::DataLoaderOptions lo;
  lo.batch_size = cfg.batch().micro_batch_size();
  lo.seq_len = cfg.data().seq_len();
  lo.seed = cfg.seed();
  lo.shuffle = cfg.data().shuffle();
  train_loader_ = std::make_unique<data::DataLoader>(
      std::make_shared<data::TokenDataset>(cfg.data().train_path()), lo);
  train_loader_->check_vocab(cfg.model().vocab_size());
  if (!cfg.data().val_path().empty()) {
    lo.shuffle = false;
    lo.drop_last = false;
    val_loader_ = std::make_unique<data::DataLoader>(
        std::make_shared<data::TokenDataset>(cfg.data().val_path()), lo);
    val_loader_->check_vocab(cfg.model().vocab_size());
  }
  metrics_ = std::make_unique<MetricsLogger>(cfg.output_dir(), cfg.logging().tensorboard());

  const std::string& resume = cfg.checkpoint().resume();
  if (resume == "auto") {
    std::string dir = find_latest_checkpoint(cfg.checkpoint().dir());
    if (!dir.empty()) resume_from(dir);
  } else if (resume != "none" && !resume.empty()) {
    resume_from(resume);
  }
}

Trainer::~Trainer() = default;

void Trainer::init_weights_from(const std::string& source) {
  if (source.rfind("hf:", 0) != 0) {
    load_model_tensors(load_checkpoint(source), *model_, source);
    return;
  }
  // A Hugging Face GPT-2 directory: same layout policy as the config (padded vocab rows).
  std::string dir = source.substr(3);
  HfImportOptions o;
  o.vocab_pad_multiple = std::lcm(std::max<int64_t>(cfg_.model().vocab_pad_multiple(), 1),
                                  std::max<int64_t>(cfg_.parallel().tp(), 1));
  HfModel hf = hf_to_loom(dir, o);
  const models::GPTConfig& want = model_->config();
  std::string problems;
  auto check = [&](const char* field, int64_t hf_value, int64_t ours) {
    if (hf_value != ours)
      problems += detail::str_cat("\n  model.", field, "=", ours, " but ", dir, " has ", hf_value);
  };
  check("n_layer", hf.config.n_layer, want.n_layer);
  check("n_head", hf.config.n_head, want.n_head);
  check("n_embd", hf.config.n_embd, want.n_embd);
  check("block_size", hf.config.block_size, want.block_size);
  check("vocab_size", hf.vocab_size, cfg_.model().vocab_size());
  LOOM_CHECK_T(ConfigError, problems.empty(), "init_from=", source,
               ": the model section does not match the Hugging Face model:", problems,
               "\n  hint: use a matching preset (gpt2-124m, ...) or set these fields");
  Checkpoint ck;
  for (auto& [name, t] : hf.params) ck.tensors["model/" + name] = t;
  load_model_tensors(ck, *model_, dir);
}

void Trainer::build_optimizer() {
  const auto& o = cfg_.optimizer();
  auto filter = [o](const std::string& name, const Tensor& p) {
    bool is_embedding = name.rfind("wte.", 0) == 0 || name.rfind("wpe.", 0) == 0;
    bool is_norm = name.find(".ln_") != std::string::npos || name.rfind("ln_f.", 0) == 0;
    bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (is_bias) return !o.no_decay_bias();
    if (is_norm) return !o.no_decay_norm();
    if (is_embedding) return !o.no_decay_embedding();
    return p.dim() >= 2;
  };
  auto params = model_->named_parameters();
  if (o.type() == config::OptimizerConfig::SGD) {
    optim::SGDOptions so;
    so.lr = o.lr();
    so.momentum = o.momentum();
    so.nesterov = o.nesterov();
    so.weight_decay = o.weight_decay();
    so.decay_filter = filter;
    opt_ = std::make_unique<optim::SGD>(params, so);
  } else {
    optim::AdamWOptions ao;
    ao.lr = o.lr();
    ao.beta1 = o.beta1();
    ao.beta2 = o.beta2();
    ao.eps = o.eps();
    ao.weight_decay = o.weight_decay();
    ao.decay_filter = filter;
    opt_ = std::make_unique<optim::AdamW>(params, ao);
  }
}

std::string Trainer::save(int64_t step) {
  Checkpoint ck;
  ck.step = step;
  add_model_tensors(ck, *model_);
  json state;
  for (const auto& [name, st] : opt_->states()) {
    for (const auto& [key, buf] : st.buffers) ck.tensors["optim/" + key + "/" + name] = buf;
    state["param_steps"][name] = st.step;
  }
  state["step"] = step;
  state["optimizer_steps"] = opt_->step_count();
  auto ls = train_loader_->state();
  state["loader"] = {{"epoch", ls.epoch}, {"position", ls.position}};
  Generator& dg = model_->dropout_generator();
  state["dropout_rng"] = {{"seed", dg.seed()}, {"offset", dg.offset()}};
  ck.meta["trainer"] = state.dump();
  ck.meta["config"] = config::to_text(cfg_);
  return save_checkpoint(cfg_.checkpoint().dir(), ck, int(cfg_.checkpoint().keep_last()));
}

void Trainer::resume_from(const std::string& dir) {
  Checkpoint ck = load_checkpoint(dir);  // verified and fully read before anything changes
  json state;
  try {
    state = json::parse(ck.meta.at("trainer"));
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + dir + ": meta.json has no valid \"trainer\" entry (" +
                          e.what() + ")");
  }
  std::string problems;
  const json param_steps = state.value("param_steps", json::object());
  for (const auto& [name, steps] : param_steps.items()) {
    (void)steps;
    bool found = false;
    for (const auto& [key, t] : ck.tensors)
      found = found || (key.rfind("optim/", 0) == 0 && key.size() > name.size() &&
                        key.compare(key.size() - name.size(), name.size(), name) == 0);
    if (!found) problems += "\n  no optimizer state for " + name;
  }
  LOOM_CHECK_T(CheckpointError, problems.empty(), "checkpoint ", dir, ":", problems);
  load_model_tensors(ck, *model_, dir);
  for (const auto& [key, t] : ck.tensors) {
    if (key.rfind("optim/", 0) != 0) continue;
    size_t slash = key.find('/', 6);
    std::string buf = key.substr(6, slash - 6), name = key.substr(slash + 1);
    optim::ParamState& st = opt_->state(name);
    st.buffers[buf] = t.to(device_).clone();
    st.step = param_steps.value(name, int64_t(0));
  }
  opt_->set_step_count(state.value("optimizer_steps", int64_t(0)));
  step_ = state.value("step", int64_t(0));
  train_loader_->set_state({state["loader"].value("epoch", int64_t(0)),
                            state["loader"].value("position", int64_t(0))});
  model_->dropout_generator().set_state(state["dropout_rng"].value("seed", uint64_t(0)),
                                        state["dropout_rng"].value("offset", uint64_t(0)));
  LOG_RANK0(INFO) << "resumed from " << dir << " at step " << step_;
}

double Trainer::train_step(int64_t step, double& grad_norm) {
  opt_->set_lr(schedule_.lr_at(step - 1));
  double loss_sum = 0.0;
  for (int64_t micro = 0; micro < grad_accum_; ++micro) {
    data::Batch b = train_loader_->next();
    Tensor loss = model_->loss(b.inputs.to(device_), b.targets.to(device_));
    double v = loss.item();
    if (!std::isfinite(v))
      throw NonFiniteError(detail::str_cat("train: loss is ", v, " at step ", step, " (micro-batch ",
                                           micro, "); hint: lower optimizer.lr or check the data"));
    loss_sum += v;
    if (grad_accum_ > 1) loss = loss * (1.0 / double(grad_accum_));
    loss.backward();
  }
  double clip = cfg_.optimizer().grad_clip();
  grad_norm = clip > 0 ? optim::clip_grad_norm(model_->parameters(), clip)
                       : optim::grad_norm(model_->parameters());
  opt_->step();
  opt_->zero_grad();
  return loss_sum / double(grad_accum_);
}

double Trainer::evaluate() {
  if (!val_loader_) return std::numeric_limits<double>::quiet_NaN();
  NoGradGuard g;
  model_->eval();
  val_loader_->set_state({0, 0});  // the same batches every time
  int64_t n = std::min<int64_t>(cfg_.eval().steps(), val_loader_->batches_per_epoch());
  LOOM_CHECK_T(DataError, n > 0, "eval: the validation set ", cfg_.data().val_path(),
               " has no full window of seq_len+1 tokens");
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    data::Batch b = val_loader_->next();
    sum += model_->loss(b.inputs.to(device_), b.targets.to(device_)).item();
  }
  model_->train();
  return sum / double(n);
}

TrainSummary Trainer::run() {
  TrainSummary s;
  s.first_step = step_ + 1;
  s.first_val_loss = s.last_val_loss = std::numeric_limits<double>::quiet_NaN();
  const int64_t max_steps = cfg_.max_steps();
  const int64_t tokens_per_step = cfg_.batch().micro_batch_size() * cfg_.data().seq_len() * grad_accum_;
  const int64_t eval_every = cfg_.eval().interval(), ckpt_every = cfg_.checkpoint().interval();
  bool show = cfg_.logging().progress() != config::LoggingConfig::OFF;
  ProgressDisplay progress(max_steps, /*force_plain=*/false, cfg_.logging().interval());
  auto do_eval = [&](int64_t step) {
    double v = evaluate();
    if (std::isnan(v)) return;
    if (std::isnan(s.first_val_loss)) s.first_val_loss = v;
    s.last_val_loss = v;
    metrics_->write({{"step", double(step)}, {"val_loss", v}, {"val_ppl", std::exp(v)}}, "eval/");
    if (show) progress.message(detail::str_cat("eval step ", step, ": val_loss ", v, " ppl ", std::exp(v)));
  };
  if (step_ == 0 && eval_every > 0) do_eval(0);
  model_->train();
  while (step_ < max_steps) {
    int64_t step = step_ + 1;
    auto t0 = std::chrono::steady_clock::now();
    double grad_norm = 0.0;
    double loss = train_step(step, grad_norm);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    step_ = step;
    s.losses.push_back(loss);
    double tps = double(tokens_per_step) / dt;
    metrics_->write({{"step", double(step)}, {"loss", loss}, {"lr", schedule_.lr_at(step - 1)},
                     {"grad_norm", grad_norm}, {"tokens_per_s", tps}, {"step_ms", dt * 1e3}});
    if (show) progress.update(step, loss, schedule_.lr_at(step - 1), tps);
    if (eval_every > 0 && step % eval_every == 0 && step != max_steps) do_eval(step);
    if (ckpt_every > 0 && step % ckpt_every == 0 && step != max_steps) {
      s.last_checkpoint = save(step);
      if (show) progress.message("saved checkpoint " + s.last_checkpoint);
    }
  }
  if (eval_every > 0) do_eval(step_);
  s.last_checkpoint = save(step_);
  if (show) {
    progress.message("saved checkpoint " + s.last_checkpoint);
    progress.finish();
  }
  s.last_step = step_;
  return s;
}

}  // namespace loom::train

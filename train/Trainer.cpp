// Trainer (see Trainer.h).
#include "train/Trainer.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <nlohmann/json.hpp>

#include "core/autograd/Autocast.h"
#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/util/Logging.h"
#include "data/TokenDataset.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "models/RewardModel.h"
#include "optim/AdamW.h"
#include "optim/ClipGradNorm.h"
#include "optim/LossScaler.h"
#include "optim/SGD.h"
#include "parallel/ProcessGroups.h"
#include "parallel/data/DistributedRuntime.h"
#include "parallel/data/GradBucketReducer.h"
#include "optim/ZeroAdamW.h"
#include "rlhf/PpoStage.h"
#include "rlhf/Stages.h"
#include "io/HfConvert.h"
#include "train/ModelParallel.h"

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
  g.real_vocab_size = m.vocab_size();
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

void add_model_tensors(io::Checkpoint& ck, const models::GPT& model) {
  for (const auto& [name, p] : model.named_parameters()) ck.tensors["model/" + name] = p.detach();
}

Tensor fit_vocab_rows(const std::string& name, const Tensor& t, const Shape& want,
                      int64_t real_vocab) {
  const std::string base = name.substr(name.rfind('/') + 1);
  if (t.shape() == want || (base != "wte.weight" && base != "lm_head.weight") || t.dim() != 2 ||
      want.size() != 2 || t.size(1) != want[1] || t.size(0) < real_vocab || want[0] < real_vocab)
    return t;
  // Another vocabulary padding (vocab_pad_multiple, TP size): rows beyond the real vocabulary
  // are never looked up and not part of the logits, so only the real rows carry over.
  NoGradGuard g;
  Tensor out = Tensor::zeros(want, t.dtype(), t.device());
  out.narrow(0, 0, real_vocab).copy_(t.narrow(0, 0, real_vocab));
  return out;
}

void load_model_tensors(const io::Checkpoint& ck_in, models::GPT& model, const std::string& source) {
  std::string problems;
  auto params = model.named_parameters();
  io::Checkpoint ck;  // model tensors only, vocab tables fitted to this model's padding
  for (const auto& [name, p] : params) {
    auto it = ck_in.tensors.find("model/" + name);
    if (it != ck_in.tensors.end())
      ck.tensors["model/" + name] =
          fit_vocab_rows(name, it->second, p.shape(), model.config().logits_size());
  }
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

namespace {
// dtype F32 runs in f32; BF16 runs the model under bf16 autocast (f32 master weights, gradients
// and optimizer state), which only the CUDA kernels implement.
void check_precision(const RunConfig& cfg) {
  LOOM_CHECK_T(ConfigError, cfg.dtype() != RunConfig::F16, "train: dtype=F16: the CUDA kernels "
               "compute in bf16 and f32 only so far; expected dtype=BF16 (optionally with a "
               "loss_scale block) or F32");
  LOOM_CHECK_T(ConfigError, cfg.dtype() != RunConfig::BF16 || cfg.device() == RunConfig::CUDA,
               "train: dtype=BF16 autocasts CUDA kernels only (the CPU kernels are f32/f64); "
               "expected device=CUDA, or dtype=F32 on the CPU");
}
}  // namespace

void Trainer::build_loss_scaler() {
  LOOM_CHECK_T(ConfigError, !mp_ && !zero_ && !ppo_, "train: loss_scale is supported with "
               "tp = pp = 1, zero_stage 0 and stages other than PPO; got tp=",
               cfg_.parallel().tp(), " pp=", cfg_.parallel().pp(), " zero_stage=",
               cfg_.parallel().zero_stage(), " stage=", RunConfig::Stage_Name(cfg_.stage()));
  const config::LossScaleConfig& l = cfg_.loss_scale();
  optim::LossScalerOptions o;
  o.init_scale = l.init_scale();
  o.growth_factor = l.growth_factor();
  o.backoff_factor = l.backoff_factor();
  o.growth_interval = l.growth_interval();
  o.dynamic = l.dynamic();
  o.min_scale = std::min(1.0, o.init_scale);
  optim::FoundInfReducer reduce;
  if (grid_ && grid_->dp_size() > 1)  // every DP rank skips the same steps
    reduce = [this](const Tensor& found_inf) {
      Tensor host = found_inf.to(Device::cpu());
      grid_->dp_group().all_reduce(host, ReduceOp::Max);
      Tensor(found_inf).copy_(host);
    };
  scaler_ = std::make_unique<optim::LossScaler>(o, std::move(reduce));
}

Trainer::Trainer(const RunConfig& cfg, std::shared_ptr<Communicator> world)
    : cfg_(cfg), device_(device_from(cfg)), init_gen_(cfg.seed()) {
  if (world) setup_parallel(std::move(world));
  check_precision(cfg);
  grad_accum_ = config::grad_accum_steps(cfg);
  LOOM_CHECK_T(ConfigError, cfg.stage() != RunConfig::PPO || cfg.parallel().zero_stage() == 0,
               "train: stage PPO keeps whole optimizer states per rank; expected "
               "parallel.zero_stage=0, got ", cfg.parallel().zero_stage());
  models::GPTConfig gc = gpt_config_from(cfg);
  const bool model_parallel = grid_ && grid_->tp_size() * grid_->pp_size() > 1;
  if (model_parallel) {
    // The full model every rank slices is the single process's (its vocabulary padding, so its
    // initial draws); ParallelGpt pads the vocabulary further for TP with zero rows.
    RunConfig one = cfg;
    one.mutable_parallel()->set_tp(1);
    gc.vocab_size = config::padded_vocab_size(one);
  }
  if (cfg.stage() == RunConfig::REWARD)
    model_ = std::make_unique<models::RewardModel>(gc, init_gen_, DType::F32, device_);
  else
    model_ = std::make_unique<models::GPT>(gc, init_gen_, DType::F32, device_);
  if (!cfg.init_from().empty()) init_weights_from(cfg.init_from());
  num_parameters_ = model_->num_parameters();
  if (model_parallel) {
    // Every rank built the same full model from the same seed (or init_from); each keeps only
    // its pieces.
    mp_ = std::make_unique<ModelParallel>(cfg, *grid_, *model_);
    model_.reset();
  }
  build_optimizer();
  if (cfg.has_loss_scale()) build_loss_scaler();

  const auto& s = cfg.schedule();
  schedule_.kind = s.decay() == config::LrScheduleConfig::LINEAR     ? optim::DecayKind::Linear
                   : s.decay() == config::LrScheduleConfig::CONSTANT ? optim::DecayKind::Constant
                                                                     : optim::DecayKind::Cosine;
  schedule_.peak_lr = cfg.optimizer().lr();
  schedule_.min_lr = s.has_min_lr() ? s.min_lr() : s.min_lr_ratio() * cfg.optimizer().lr();
  schedule_.warmup_steps = s.warmup_steps();
  schedule_.total_steps = s.decay_steps() > 0 ? s.decay_steps() : cfg.max_steps();
  schedule_.validate();

  if (cfg.stage() == RunConfig::PRETRAIN)
    build_loaders();
  else
    build_stage();
  if (writer_)
    metrics_ = std::make_unique<MetricsLogger>(cfg.output_dir(), cfg.logging().tensorboard());
  resume_if_asked();
  if (grid_ && grid_->dp_size() > 1) {
    NoGradGuard g;  // replicas start bitwise equal even if an init path were rank dependent
    for (const Tensor& p : mp_ ? mp_->model().parameters() : model_->parameters())
      grid_->dp_group().broadcast(p.detach(), 0);
    if (ppo_)
      for (const Tensor& p : ppo_->critic().parameters())
        grid_->dp_group().broadcast(p.detach(), 0);
    // PPO (its two models, ppo_optimizer_step) and ModelParallel reduce their gradients themselves.
    if (!zero_ && !ppo_ && !mp_)
      reducer_ = std::make_unique<GradBucketReducer>(model_->parameters(), grid_->dp_group());
  }
}

void Trainer::build_loaders() {
  const RunConfig& cfg = cfg_;
  data::DataLoaderOptions lo;
  lo.batch_size = cfg.batch().micro_batch_size();
  lo.seq_len = cfg.data().seq_len();
  lo.seed = cfg.seed();
  lo.shuffle = cfg.data().shuffle();
  lo.rank = grid_ ? grid_->dp_rank() : 0;  // each DP rank reads its own windows
  lo.world = grid_ ? grid_->dp_size() : 1;
  train_loader_ = std::make_unique<data::DataLoader>(
      std::make_shared<data::TokenDataset>(cfg.data().train_path()), lo);
  train_loader_->check_vocab(cfg.model().vocab_size());
  if (!cfg.data().val_path().empty()) {
    lo.shuffle = false;
    lo.rank = 0;  // every rank evaluates the whole set (identical parameters, identical result)
    lo.world = 1;
    lo.drop_last = false;
    val_loader_ = std::make_unique<data::DataLoader>(
        std::make_shared<data::TokenDataset>(cfg.data().val_path()), lo);
    val_loader_->check_vocab(cfg.model().vocab_size());
  }
}

void Trainer::setup_parallel(std::shared_ptr<Communicator> world) {
  // First collective of the job: ranks with different configs must not start training.
  dist::check_config_hash(*world, config::config_hash(cfg_));
  const auto& par = cfg_.parallel();
  LOOM_CHECK_T(ConfigError, par.tp() * par.pp() * par.dp() == world->size(),
               "train: expected parallel.tp*pp*dp = world size ", world->size(), ", got tp=",
               par.tp(), " pp=", par.pp(), " dp=", par.dp(),
               "; hint: resolve the config with the job's world size");
  LOOM_CHECK_T(ConfigError,
               par.zero_stage() == 0 || cfg_.optimizer().type() != config::OptimizerConfig::SGD,
               "train: parallel.zero_stage=1 shards AdamW state; expected optimizer.type=ADAMW, "
               "got SGD");
  LOOM_CHECK_T(ConfigError, cfg_.device() != RunConfig::CUDA || world->size() == 1,
               "train: device=CUDA on ", world->size(), " ranks: the trainer reduces over MPI "
               "(CPU tensors) and does not drive the NCCL communicator yet; expected device=CPU "
               "for a multi-rank run, or a single-process run on the GPU");
  if (par.ordered_reduce()) world->set_ordered_reduce(true);
  grid_ = std::make_unique<ProcessGrid>(world, int(par.tp()), int(par.pp()), int(par.dp()));
  if (par.ordered_reduce()) grid_->dp_group().set_ordered_reduce(true);
  logging::set_rank_tag(grid_->tag(), grid_->global_rank());
  writer_ = grid_->global_rank() == 0;
}

void Trainer::resume_if_asked() {
  const std::string& resume = cfg_.checkpoint().resume();
  std::string dir;
  if (resume == "auto") {
    // Rank 0 picks the checkpoint so every rank resumes from the same one (shared filesystem).
    if (writer_) dir = io::find_latest_checkpoint(cfg_.checkpoint().dir());
    if (grid_) dir = dist::broadcast_string(grid_->world(), dir, 0);
  } else if (resume != "none" && !resume.empty()) {
    dir = resume;
  }
  if (!dir.empty()) resume_from(dir);
  if (!grid_) return;
  Tensor steps = Tensor::zeros({grid_->world().size()}, DType::I64);
  grid_->world().all_gather(steps, Tensor::from_vector<int64_t>({step_}, {1}));
  std::vector<int64_t> v = steps.to_vector<int64_t>();
  for (size_t r = 1; r < v.size(); ++r)
    LOOM_CHECK_T(CheckpointError, v[r] == v[0], "resume: rank ", r, " is at step ", v[r],
                 " but rank 0 is at step ", v[0], " (", dir.empty() ? "no checkpoint" : dir, ")");
}

Trainer::~Trainer() = default;

namespace {
// A reward head the source checkpoint lacks keeps its fresh initial values.
void keep_fresh_head(io::Checkpoint& ck, const models::GPT& model) {
  for (const auto& [name, p] : model.named_parameters())
    if (name.rfind("value_head.", 0) == 0 && !ck.tensors.count("model/" + name))
      ck.tensors["model/" + name] = p.detach().clone();
}
}  // namespace

void Trainer::load_weights(const std::string& source, models::GPT& model) const {
  if (source.rfind("hf:", 0) != 0) {
    io::Checkpoint ck = io::load_checkpoint(source);
    keep_fresh_head(ck, model);
    load_model_tensors(ck, model, source);
    return;
  }
  // A Hugging Face GPT-2 directory: same layout policy as the config (padded vocab rows).
  std::string dir = source.substr(3);
  io::HfImportOptions o;
  o.vocab_pad_multiple = std::lcm(std::max<int64_t>(cfg_.model().vocab_pad_multiple(), 1),
                                  std::max<int64_t>(cfg_.parallel().tp(), 1));
  io::HfModel hf = io::hf_to_loom(dir, o);
  const models::GPTConfig& want = model.config();
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
  io::Checkpoint ck;
  for (auto& [name, t] : hf.params) ck.tensors["model/" + name] = t;
  keep_fresh_head(ck, model);
  load_model_tensors(ck, model, dir);
}

void Trainer::build_stage() {
  rlhf::StageContext ctx;
  ctx.device = device_;
  ctx.dp_rank = grid_ ? grid_->dp_rank() : 0;
  ctx.dp_size = grid_ ? grid_->dp_size() : 1;
  ctx.load_weights = [this](const std::string& source, models::GPT& m) { load_weights(source, m); };
  if (cfg_.stage() == RunConfig::PPO) {
    rlhf::SumReducer reduce;
    if (grid_ && grid_->dp_size() > 1)
      reduce = [this](std::vector<double>& v) {
        Tensor t = Tensor::from_vector<double>(v, {int64_t(v.size())});
        grid_->dp_group().all_reduce(t);
        v = t.to_vector<double>();
      };
    auto ppo = std::make_unique<rlhf::PpoStage>(cfg_, *model_, std::move(ctx), std::move(reduce));
    ppo_ = ppo.get();
    stage_ = std::move(ppo);
    critic_opt_ = make_optimizer(ppo_->critic().named_parameters());
  } else {
    stage_ = rlhf::make_stage(cfg_, *model_, std::move(ctx));
  }
  LOG_RANK0(INFO) << stage_->describe();
}

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
}  // namespace

std::unique_ptr<optim::Optimizer> Trainer::make_optimizer(
    const std::vector<models::NamedTensor>& params) const {
  const auto& o = cfg_.optimizer();
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
  return std::make_unique<optim::AdamW>(params, ao);
}

void Trainer::build_optimizer() {
  const auto& o = cfg_.optimizer();
  auto params = mp_ ? mp_->model().named_parameters() : model_->named_parameters();
  if (o.type() != config::OptimizerConfig::SGD && grid_ && cfg_.parallel().zero_stage() == 1) {
    auto filter = [o](const std::string& name, const Tensor& p) { return decays(o, name, p); };
    optim::AdamWOptions ao;
    ao.lr = o.lr();
    ao.beta1 = o.beta1();
    ao.beta2 = o.beta2();
    ao.eps = o.eps();
    zero_ = std::make_unique<ZeroAdamW>(
        optim::make_decay_groups(params, o.lr(), o.weight_decay(), filter), ao,
        grid_->dp_group(), mp_ ? mp_->zero_norm_options() : ZeroNormOptions{});
    return;
  }
  opt_ = make_optimizer(params);
}

std::string Trainer::save(int64_t step) {
  // Under ZeRO-1 the state is gathered into logical tensors (collective), so the checkpoint loads
  // at any DP size.
  const std::map<std::string, optim::ParamState> states =
      zero_ ? zero_->gather_states() : opt_->states();
  std::string path;
  if (mp_) return write_checkpoint(step, states);  // collective: every rank writes its pieces
  if (writer_) path = write_checkpoint(step, states);
  // Also keeps the other ranks from running ahead while rank 0 writes.
  if (grid_) path = dist::broadcast_string(grid_->world(), path, 0);
  return path;
}

std::string Trainer::write_checkpoint(int64_t step,
                                      const std::map<std::string, optim::ParamState>& states) {
  io::Checkpoint ck;
  ck.step = step;
  if (mp_)
    mp_->add_pieces(ck, states);
  else
    add_model_tensors(ck, *model_);
  json state;
  for (const auto& [name, st] : states) {
    if (!mp_)
      for (const auto& [key, buf] : st.buffers) ck.tensors["optim/" + key + "/" + name] = buf;
    // Under TP x PP rank 0 holds only its stage's names; the others resume at optimizer_steps.
    state["param_steps"][name] = st.step;
  }
  state["step"] = step;
  state["optimizer_steps"] = zero_ ? zero_->step_count() : opt_->step_count();
  if (stage_) {
    rlhf::StagePosition p = stage_->position();
    state["loader"] = {{"epoch", p.epoch}, {"position", p.position}};
  } else {
    auto ls = train_loader_->state();
    // position counts this DP rank's windows; "dp" lets a run with another DP size convert it.
    state["loader"] = {{"epoch", ls.epoch}, {"position", ls.position},
                       {"dp", grid_ ? grid_->dp_size() : 1}};
  }
  if (mp_) {
    tp::TensorParallelRng::State r = mp_->model().rng().state();
    state["tp_rng"] = {{"seed", r.seed}, {"replicated_offset", r.replicated_offset},
                       {"tensor_parallel_offset", r.tensor_parallel_offset}};
  } else {
    Generator& dg = model_->dropout_generator();
    state["dropout_rng"] = {{"seed", dg.seed()}, {"offset", dg.offset()}};
  }
  if (ppo_) state["ppo"] = json::parse(add_ppo_state(ck));
  if (scaler_)
    state["loss_scale"] = {{"scale", scaler_->state().scale},
                           {"growth_tracker", scaler_->state().growth_tracker},
                           {"skipped_steps", scaler_->skipped_steps()}};
  ck.meta["trainer"] = state.dump();
  ck.meta["config"] = config::to_text(cfg_);
  if (mp_)
    return io::save_checkpoint(cfg_.checkpoint().dir(), ck, int(cfg_.checkpoint().keep_last()),
                           grid_->world());
  return io::save_checkpoint(cfg_.checkpoint().dir(), ck, int(cfg_.checkpoint().keep_last()));
}

void Trainer::load_optimizer_states(const io::Checkpoint& ck, const json& state,
                                    const std::string& dir) {
  const json param_steps = state.value("param_steps", json::object());
  const int64_t opt_steps = state.value("optimizer_steps", int64_t(0));
  std::map<std::string, optim::ParamState> states;
  if (mp_) {
    states = mp_->load(ck, dir);
  } else {
    load_model_tensors(ck, *model_, dir);
    for (const auto& [key, t] : ck.tensors) {
      if (key.rfind("optim/", 0) != 0) continue;
      size_t slash = key.find('/', 6);
      std::string buf = key.substr(6, slash - 6), name = key.substr(slash + 1);
      Tensor fitted = t;
      for (const auto& [pname, p] : model_->named_parameters())
        if (pname == name)
          fitted = fit_vocab_rows(name, t, p.shape(), model_->config().logits_size());
      states[name].buffers[buf] = fitted.to(device_).clone();
    }
  }
  // A name missing from param_steps was saved by a TP x PP rank other than 0: it took every step.
  for (auto& [name, st] : states) st.step = param_steps.value(name, opt_steps);
  if (zero_) {
    zero_->load_states(states, opt_steps);
  } else {
    for (auto& [name, st] : states) opt_->state(name) = std::move(st);
    opt_->set_step_count(opt_steps);
  }
}

void Trainer::restore_position(const json& state, const std::string& dir) {
  step_ = state.value("step", int64_t(0));
  const int64_t epoch = state["loader"].value("epoch", int64_t(0));
  const int64_t position = state["loader"].value("position", int64_t(0));
  if (stage_) {
    stage_->set_position({epoch, position});
  } else {
    // Windows are dealt round-robin over DP ranks, so a per-rank position p at DP size d is the
    // global position p * d: convert it for this run's DP size.
    const int64_t saved_dp = state["loader"].value("dp", int64_t(1));
    const int64_t dp = grid_ ? grid_->dp_size() : 1;
    const int64_t global = position * saved_dp;
    LOOM_CHECK_T(CheckpointError, global % dp == 0, "checkpoint ", dir, ": its data position (",
                 global, " windows over ", saved_dp, " data-parallel ranks) does not split over ",
                 dp, " data-parallel ranks; hint: resume with a DP size that divides ", global);
    train_loader_->set_state({epoch, global / dp});
  }
  if (mp_ && state.contains("tp_rng")) {
    const json& r = state["tp_rng"];
    mp_->model().rng().set_state({r.value("seed", uint64_t(0)),
                                  r.value("replicated_offset", uint64_t(0)),
                                  r.value("tensor_parallel_offset", uint64_t(0))});
  } else if (!mp_ && state.contains("dropout_rng")) {  // absent when a TP x PP run saved it
    model_->dropout_generator().set_state(state["dropout_rng"].value("seed", uint64_t(0)),
                                          state["dropout_rng"].value("offset", uint64_t(0)));
  }
  if (scaler_ && state.contains("loss_scale")) {  // else: a run without scaling; start fresh
    const json& l = state["loss_scale"];
    scaler_->set_state({l.value("scale", cfg_.loss_scale().init_scale()),
                        l.value("growth_tracker", int64_t(0))});
  }
}

void Trainer::resume_from(const std::string& dir) {
  io::Checkpoint ck = io::load_checkpoint(dir);  // verified and fully read before anything changes
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
  load_optimizer_states(ck, state, dir);
  restore_position(state, dir);
  if (ppo_) {
    LOOM_CHECK_T(CheckpointError, state.contains("ppo"), "checkpoint ", dir,
                 ": has no PPO state (critic, KL coefficient); expected a checkpoint of a PPO run");
    load_ppo_state(ck, state["ppo"].dump(), dir);
  }
  LOG_RANK0(INFO) << "resumed from " << dir << " at step " << step_;
}

double Trainer::train_step(int64_t step, double& grad_norm) {
  if (ppo_) return ppo_train_step(step, grad_norm);
  if (zero_)
    zero_->set_lr(schedule_.lr_at(step - 1));
  else
    opt_->set_lr(schedule_.lr_at(step - 1));
  double loss_sum = 0.0;
  stage_metrics_.clear();
  if (mp_) {  // the pipeline schedule runs every micro-batch of the step
    const double loss =
        mp_->forward_backward(next_micro_batches(*train_loader_, grad_accum_), step);
    if (!std::isfinite(loss))
      throw NonFiniteError(detail::str_cat("train: loss is ", loss, " at step ", step,
                                           "; hint: lower optimizer.lr or check the data"));
    optimizer_step(grad_norm);
    return loss;
  }
  for (int64_t micro = 0; micro < grad_accum_; ++micro) {
    // Gradients are reduced (during backward) on the last micro-batch only.
    if (reducer_) reducer_->set_sync(micro == grad_accum_ - 1);
    Tensor loss;
    if (stage_) {
      rlhf::StageStep st = stage_->next_step();
      loss = st.loss;
      if (stage_metrics_.empty()) stage_metrics_.assign(st.metrics.size(), {"", 0.0});
      for (size_t i = 0; i < st.metrics.size(); ++i)
        stage_metrics_[i] = {st.metrics[i].first, stage_metrics_[i].second + st.metrics[i].second};
    } else {
      data::Batch b = train_loader_->next();
      loss = model_->loss(b.inputs.to(device_), b.targets.to(device_));
    }
    double v = loss.item();
    if (!std::isfinite(v))
      throw NonFiniteError(detail::str_cat("train: loss is ", v, " at step ", step, " (micro-batch ",
                                           micro, "); hint: lower optimizer.lr or check the data"));
    loss_sum += v;
    if (grad_accum_ > 1) loss = loss * (1.0 / double(grad_accum_));
    if (scaler_) loss = scaler_->scale_loss(loss);
    loss.backward();
  }
  optimizer_step(grad_norm);
  reduce_stage_metrics(grad_accum_);
  double loss = loss_sum / double(grad_accum_);
  if (grid_ && grid_->dp_size() > 1) {  // logged loss: mean over DP ranks
    Tensor t = Tensor::from_vector<double>({loss}, {1});
    grid_->dp_group().all_reduce(t);
    loss = t.item() / double(grid_->dp_size());
  }
  return loss;
}

std::vector<pipeline::MicroBatch> Trainer::next_micro_batches(data::DataLoader& loader,
                                                              int64_t n) {
  std::vector<pipeline::MicroBatch> out;
  for (int64_t i = 0; i < n; ++i) {
    data::Batch b = loader.next();
    out.push_back({b.inputs.to(device_), b.targets.to(device_), i});
  }
  return out;
}

void Trainer::optimizer_step(double& grad_norm) {
  const double clip = cfg_.optimizer().grad_clip();
  if (zero_) {
    grad_norm = zero_->step(clip);  // global norm over the shards, then clip, update, gather
    zero_->zero_grad();
    return;
  }
  if (mp_) {
    grad_norm = mp_->clip_gradients(clip);  // over all ranks of the replica, each element once
    opt_->step();
    opt_->zero_grad();
    return;
  }
  if (reducer_) reducer_->finish();  // every rank now holds the same averaged gradients
  if (scaler_ && scaler_->unscale_(*opt_)) {  // overflow on some rank: every rank skips
    grad_norm = std::numeric_limits<double>::quiet_NaN();
    scaler_->update();
    opt_->zero_grad();
    return;
  }
  grad_norm = clip > 0 ? optim::clip_grad_norm(model_->parameters(), clip)
                       : optim::grad_norm(model_->parameters());
  opt_->step();
  if (scaler_) scaler_->update();
  opt_->zero_grad();
}

void Trainer::reduce_stage_metrics(int64_t micro_batches) {
  if (stage_metrics_.empty()) return;
  std::vector<double> v;
  for (const auto& [name, x] : stage_metrics_) v.push_back(x / double(micro_batches));
  if (grid_ && grid_->dp_size() > 1) {  // mean over DP ranks, like the loss
    Tensor t = Tensor::from_vector<double>(v, {int64_t(v.size())});
    grid_->dp_group().all_reduce(t);
    v = t.to_vector<double>();
    for (double& x : v) x /= double(grid_->dp_size());
  }
  for (size_t i = 0; i < v.size(); ++i) stage_metrics_[i].second = v[i];
}

std::vector<std::pair<std::string, double>> Trainer::evaluate_metrics() {
  if (stage_) {
    model_->eval();
    auto m = stage_->evaluate(cfg_.eval().steps());
    model_->train();
    return m;
  }
  double v = evaluate();
  if (std::isnan(v)) return {};
  return {{"val_loss", v}, {"val_ppl", std::exp(v)}};
}

double Trainer::evaluate() {
  if (stage_) {
    auto m = evaluate_metrics();
    return m.empty() ? std::numeric_limits<double>::quiet_NaN() : m.front().second;
  }
  if (!val_loader_) return std::numeric_limits<double>::quiet_NaN();
  NoGradGuard g;
  val_loader_->set_state({0, 0});  // the same batches every time
  int64_t n = std::min<int64_t>(cfg_.eval().steps(), val_loader_->batches_per_epoch());
  LOOM_CHECK_T(DataError, n > 0, "eval: the validation set ", cfg_.data().val_path(),
               " has no full window of seq_len+1 tokens");
  if (mp_) {
    mp_->model().eval();
    const double v = mp_->evaluate(next_micro_batches(*val_loader_, n));
    mp_->model().train();
    return v;
  }
  model_->eval();
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    data::Batch b = val_loader_->next();
    sum += model_->loss(b.inputs.to(device_), b.targets.to(device_)).item();
  }
  model_->train();
  return sum / double(n);
}

models::Module& Trainer::active_model() {
  if (mp_) return mp_->model();
  return *model_;
}

MetricRecord Trainer::step_record(int64_t step, double loss, double grad_norm, double tps,
                                  double seconds) const {
  MetricRecord rec{{"step", double(step)}, {"loss", loss}, {"lr", schedule_.lr_at(step - 1)},
                   {"grad_norm", grad_norm}, {"tokens_per_s", tps}, {"step_ms", seconds * 1e3}};
  rec.insert(rec.end(), stage_metrics_.begin(), stage_metrics_.end());
  if (scaler_) {
    rec.emplace_back("loss_scale", scaler_->scale());
    rec.emplace_back("skipped_steps", double(scaler_->skipped_steps()));
  }
  return rec;
}

TrainSummary Trainer::run() {
  // bf16 autocast for every forward of the run (a no-op for F32; CUDA only, see check_precision).
  AutocastGuard autocast(cfg_.dtype() == RunConfig::BF16 ? DType::BF16 : DType::F32);
  TrainSummary s;
  s.first_step = step_ + 1;
  s.first_val_loss = s.last_val_loss = std::numeric_limits<double>::quiet_NaN();
  const int64_t max_steps = cfg_.max_steps();
  const int64_t tokens_per_step = cfg_.batch().micro_batch_size() * cfg_.data().seq_len() *
                                  grad_accum_ * (grid_ ? grid_->dp_size() : 1);
  const int64_t eval_every = cfg_.eval().interval(), ckpt_every = cfg_.checkpoint().interval();
  bool show = writer_ && cfg_.logging().progress() != config::LoggingConfig::OFF;
  // Under mpirun a rank's stdout is a pty even when the job's output goes to a file: plain lines.
  ProgressDisplay progress(max_steps, /*force_plain=*/grid_ != nullptr, cfg_.logging().interval());
  auto do_eval = [&](int64_t step) {
    auto m = evaluate_metrics();
    if (m.empty()) return;
    double v = m.front().second;  // val_loss
    if (std::isnan(s.first_val_loss)) s.first_val_loss = v;
    s.last_val_loss = v;
    MetricRecord rec{{"step", double(step)}};
    std::string text = detail::str_cat("eval step ", step, ":");
    for (const auto& [name, x] : m) {
      rec.emplace_back(name, x);
      text += detail::str_cat(" ", name, " ", x);
    }
    if (metrics_) metrics_->write(rec, "eval/");
    if (show) progress.message(text);
  };
  if (step_ == 0 && eval_every > 0) do_eval(0);
  active_model().train();
  while (step_ < max_steps) {
    int64_t step = step_ + 1;
    auto t0 = std::chrono::steady_clock::now();
    double grad_norm = 0.0;
    double loss = train_step(step, grad_norm);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    step_ = step;
    s.losses.push_back(loss);
    double tps = double(tokens_per_step) / dt;
    if (metrics_) metrics_->write(step_record(step, loss, grad_norm, tps, dt));
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

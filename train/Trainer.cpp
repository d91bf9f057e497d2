// Trainer (see Trainer.h) and the StageContext it gives stages.
#include "train/Trainer.h"

#include <chrono>
#include <filesystem>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <nlohmann/json.hpp>

#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "core/autograd/Autocast.h"
#include "core/backend/Backend.h"
#include "core/util/Logging.h"
#include "core/util/Memory.h"
#include "core/util/StopSignal.h"
#include "data/Tokenizer.h"
#include "io/HfReader.h"
#include "io/HfSource.h"
#include "io/LoraMerge.h"
#include "models/RewardModel.h"
#include "parallel/ProcessGroups.h"
#include "parallel/comm/FakeCommunicator.h"
#include "parallel/data/DistributedRuntime.h"
#include "train/PretrainStage.h"

namespace loom::train {

using config::RunConfig;
using nlohmann::json;

models::GPTConfig gpt_config_from(const RunConfig& cfg) {
  models::GPTConfig g = models::GPTConfig::from_model_config(cfg.model());
  g.vocab_size = config::padded_vocab_size(cfg);
  g.real_vocab_size = cfg.model().vocab_size();
  return g;
}

Device device_from(const RunConfig& cfg) {
  return cfg.device() == RunConfig::CUDA ? Device::cuda(0) : Device::cpu();
}

// ---- StageContext ----------------------------------------------------------------------------

models::GPTConfig StageContext::model_config() const { return gpt_config_from(cfg_); }

namespace {

// A reward model's head: a language-model checkpoint has none, so it starts fresh.
bool is_head(const std::string& name) { return name.rfind("value_head.", 0) == 0; }

// Checks the Hugging Face model read by `hf` against the run's model `want` (io::model_from_init
// fills the section from config.json when the config comes through config::resolve with it).
void check_hf_model(const io::HfReader& hf, const RunConfig& cfg, const models::GPTConfig& want) {
  const std::string& dir = hf.where();
  const models::GPTConfig& got = hf.config();
  std::string problems;
  auto check = [&](const char* field, auto hf_value, auto ours) {
    if (hf_value != ours)
      problems += detail::str_cat("\n  model.", field, "=", ours, " but ", dir, " has ", hf_value);
  };
  check("n_layer", got.n_layer, want.n_layer);
  check("n_head", got.n_head, want.n_head);
  check("n_embd", got.n_embd, want.n_embd);
  if (got.position == models::PositionKind::Learned || want.block_size > got.block_size)
    check("block_size", got.block_size, want.block_size);
  check("vocab_size", hf.vocab_size(), cfg.model().vocab_size());
  check("n_kv_head", got.kv_heads(), want.kv_heads());
  check("intermediate_size", got.ffn_size(), want.ffn_size());
  check("norm", int(got.norm), int(want.norm));
  check("position", int(got.position), int(want.position));
  check("mlp", int(got.mlp), int(want.mlp));
  check("norm_eps", got.norm_eps, want.norm_eps);
  check("rope_theta", got.rope_theta, want.rope_theta);
  check("rope_scaling.type", int(got.rope_scaling.kind), int(want.rope_scaling.kind));
  check("rope_scaling.factor", got.rope_scaling.factor, want.rope_scaling.factor);
  check("qkv_bias", got.has_qkv_bias(), want.has_qkv_bias());
  check("bias", got.bias, want.bias);
  check("tie_embeddings", got.tie_embeddings, want.tie_embeddings);
  LOOM_CHECK_T(ConfigError, problems.empty(), "init_from=hf:", dir,
               ": the model section does not match the Hugging Face model:", problems,
               "\n  hint: leave the model section out (it comes from config.json) or set these "
               "fields");
}

// The "model/" tensors of Loom checkpoint `source` into `model`; a LoRA run's checkpoint (the
// adapters alone) as the merged model it stands for (io/LoraMerge.h).
void load_loom_weights(models::GPT& model, const std::string& source,
                       const std::vector<std::string>& optional = {}) {
  const io::CheckpointReader ck(source, io::LoadOptions::weights_only());
  auto cfg = ck.meta().find("config");
  if (cfg != ck.meta().end() && config::parse_text(cfg->second, source).has_lora()) {
    load_pieces(model, io::MergedLoraSource(source), "model/", optional);
    return;
  }
  load_pieces(model, ck, "model/", optional);
}

}  // namespace

void StageContext::load_weights(const std::string& source, models::GPT& model) const {
  std::vector<std::string> optional;  // a reward head the source lacks keeps its initial values
  for (const auto& [name, p] : model.named_parameters())
    if (is_head(name)) optional.push_back(name);
  // Each rank reads only its pieces (io/TensorSource.h).
  if (source.rfind("hf:", 0) == 0) {
    io::HfReader hf(io::resolve_hf_dir(source.substr(3)));
    check_hf_model(hf, cfg_, model.config());
    load_pieces(model, hf, "", optional);
    return;
  }
  load_loom_weights(model, source, optional);
}

std::unique_ptr<models::GPT> StageContext::make_model(const models::GPTConfig& config, bool reward,
                                                      const std::string& source) const {
  models::Layout layout{&grid_.tp_group(), &grid_.pp_group()};
  std::unique_ptr<models::GPT> m =
      reward ? std::make_unique<models::RewardModel>(config, layout, DType::F32, device_)
             : std::make_unique<models::GPT>(config, layout, DType::F32, device_);
  if (source.empty()) {
    m->init_weights(cfg_.seed());
  } else {  // only what the source may lack (a reward head) is drawn; the rest is loaded
    m->set_dropout_seed(cfg_.seed());
    m->init_parameters(cfg_.seed(), [](const std::string& name) { return is_head(name); });
    load_weights(source, *m);
  }
  m->set_recompute(cfg_.recompute() == RunConfig::FULL        ? models::Recompute::Full
                   : cfg_.recompute() == RunConfig::SELECTIVE ? models::Recompute::Selective
                                                              : models::Recompute::None);
  return m;
}

std::unique_ptr<Learner> StageContext::make_learner(std::unique_ptr<models::GPT> model) const {
  return std::make_unique<Learner>(std::move(model), cfg_, grid_);
}

const data::Tokenizer& StageContext::tokenizer() const {
  if (tokenizer_) return *tokenizer_;
  const auto& d = cfg_.data();
  const bool json = !d.tokenizer_json().empty();
  LOOM_CHECK_T(ConfigError, json || !d.tokenizer_vocab().empty(), "stage ",
               RunConfig::Stage_Name(cfg_.stage()), ": expected a tokenizer "
               "(data.tokenizer_vocab + data.tokenizer_merges, or data.tokenizer_json), got none");
  data::Tokenizer tok = json ? data::Tokenizer::from_tokenizer_json(d.tokenizer_json())
                             : data::Tokenizer::from_files(d.tokenizer_vocab(),
                                                           d.tokenizer_merges());
  LOOM_CHECK_T(ConfigError, tok.vocab_size() <= cfg_.model().vocab_size(), "model.vocab_size=",
               cfg_.model().vocab_size(), ": expected >= the ", tok.vocab_size(),
               " tokens of the run's tokenizer ", json ? d.tokenizer_json() : d.tokenizer_vocab());
  return tokenizer_.emplace(std::move(tok));
}

namespace {

// The policy's LoRA adapters (cfg.lora; nothing without that block): the base weights freeze.
void add_lora_from(const RunConfig& cfg, models::GPT& model) {
  if (!cfg.has_lora()) return;
  const config::LoraConfig& l = cfg.lora();
  const tp::LoraOptions o{l.rank(), l.alpha(), l.dropout(), model.config().init_std};
  const std::vector<std::string> targets(l.target_modules().begin(), l.target_modules().end());
  try {
    model.add_lora(o, targets, cfg.seed());
  } catch (const ValueError& e) {
    throw ConfigError(std::string("config: ") + e.what());
  }
  int64_t n = 0;
  for (const nn::Parameter& p : model.trainable_parameter_list()) n += p.tensor.numel();
  LOG_RANK0(INFO) << "LoRA rank " << o.rank << " alpha " << o.alpha << ": " << n
                  << " trainable adapter elements on this rank; the base is frozen";
}

}  // namespace

void load_checkpoint_model(models::GPT& model, const RunConfig& cfg,
                           const io::CheckpointReader& ck) {
  if (!cfg.has_lora()) {
    load_pieces(model, ck, "model/");
    return;
  }
  const std::string& base = cfg.init_from();
  if (base.rfind("hf:", 0) == 0)
    load_pieces(model, io::HfReader(io::resolve_hf_dir(base.substr(3))), "");
  else
    load_loom_weights(model, base);
  add_lora_from(cfg, model);
  std::vector<std::string> frozen;  // from the base; the checkpoint has the adapters alone
  for (const nn::Parameter& p : model.parameter_list())
    if (!p.meta.trainable) frozen.push_back(p.name);
  load_pieces(model, ck, "model/", frozen);
}

// ---- Trainer ---------------------------------------------------------------------------------

namespace {

// The Hugging Face config.json a run started from: init_from "hf:" gives its own, a Loom
// checkpoint the one it carries (meta "hf_config"); "" when there is none.
std::string source_hf_config(const std::string& init_from) {
  if (init_from.rfind("hf:", 0) == 0)
    return io::detail::read_hf_config(io::resolve_hf_dir(init_from.substr(3))).json;
  if (init_from.empty() || !std::filesystem::is_directory(init_from)) return "";
  const io::CheckpointReader ck(init_from, io::LoadOptions::weights_only());
  auto it = ck.meta().find("hf_config");
  return it == ck.meta().end() ? "" : it->second;
}

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

// A resume must build the model the checkpoint was trained as. Fields that only drop tensors
// (no biases, an untied head, ...) pass every shape check, and the checkpoint's other tensors would
// be ignored: compared with the model section the checkpoint recorded (drills: resuming with
// model.bias=false trained on without the saved biases, exit 0).
void check_resume_model(const config::ModelConfig& run, const io::CheckpointReader& ck) {
  auto it = ck.meta().find("config");
  if (it == ck.meta().end()) return;  // written before checkpoints recorded their config
  const config::ModelConfig saved =
      config::parse_text(it->second, ck.where() + "/meta.json:config").model();
  std::string problems;
  auto same = [&](const char* field, const std::string& a, const std::string& b) {
    if (a != b)
      problems += detail::str_cat("\n  model.", field, "=", a, " but the checkpoint has ", b);
  };
  auto flag = [](bool b) { return std::string(b ? "true" : "false"); };
  same("bias", flag(run.bias()), flag(saved.bias()));
  same("qkv_bias", flag(run.qkv_bias()), flag(saved.qkv_bias()));
  same("tie_embeddings", flag(run.tie_embeddings()), flag(saved.tie_embeddings()));
  same("norm", config::ModelConfig::Norm_Name(run.norm()),
       config::ModelConfig::Norm_Name(saved.norm()));
  same("position", config::ModelConfig::Position_Name(run.position()),
       config::ModelConfig::Position_Name(saved.position()));
  same("mlp", config::ModelConfig::Mlp_Name(run.mlp()), config::ModelConfig::Mlp_Name(saved.mlp()));
  LOOM_CHECK_T(CheckpointError, problems.empty(), "resume: checkpoint ", ck.where(),
               " was trained with another model:", problems,
               "\n  hint: resume with the model section the checkpoint was saved with");
}

}  // namespace

Trainer::Trainer(const RunConfig& cfg, std::shared_ptr<Communicator> world,
                 StageFactory make_stage)
    : cfg_(cfg), device_(device_from(cfg)) {
  setup_grid(std::move(world));
  check_precision(cfg);
  ctx_ = std::make_unique<StageContext>(cfg_, *grid_, device_);
  models::GPTConfig gc = gpt_config_from(cfg_);
  num_parameters_ = gc.num_parameters() + (cfg_.stage() == RunConfig::REWARD ? gc.n_embd + 1 : 0);
  std::unique_ptr<models::GPT> policy_model =
      ctx_->make_model(gc, cfg_.stage() == RunConfig::REWARD, cfg_.init_from());
  add_lora_from(cfg_, *policy_model);  // before the learner: its optimizer sees only adapters
  policy_ = ctx_->make_learner(std::move(policy_model));

  const auto& s = cfg_.schedule();
  schedule_.kind = s.decay() == config::LrScheduleConfig::LINEAR     ? optim::DecayKind::Linear
                   : s.decay() == config::LrScheduleConfig::CONSTANT ? optim::DecayKind::Constant
                                                                     : optim::DecayKind::Cosine;
  schedule_.peak_lr = cfg_.optimizer().lr();
  schedule_.min_lr = s.has_min_lr() ? s.min_lr() : s.min_lr_ratio() * cfg_.optimizer().lr();
  schedule_.warmup_steps = s.warmup_steps();
  schedule_.total_steps = s.decay_steps() > 0 ? s.decay_steps() : cfg_.max_steps();
  schedule_.validate();

  if (cfg_.stage() == RunConfig::PRETRAIN) {
    stage_ = std::make_unique<PretrainStage>(*ctx_);
  } else {
    if (make_stage) stage_ = make_stage(*ctx_, *policy_);
    LOOM_CHECK_T(ConfigError, stage_ != nullptr, "train: stage=",
                 RunConfig::Stage_Name(cfg_.stage()), " needs the RLHF stages, which this "
                 "program was not given; expected stage PRETRAIN");
    LOG_RANK0(INFO) << stage_->describe();
  }
  const auto& d = cfg_.data();
  if (!d.tokenizer_json().empty() || !d.tokenizer_vocab().empty()) {
    try {
      tokenizer_ = io::tokenizer_files_of(d.tokenizer_vocab(), d.tokenizer_merges(),
                                          d.tokenizer_json());
    } catch (const ConfigError& e) {  // pretraining reads token ids, not the tokenizer
      LOG_RANK0(WARN) << "checkpoints of this run will not carry its tokenizer: " << e.what();
    }
    // The files every checkpoint of the run will carry must load and fit the model: a file that
    // exists but is no tokenizer is an error naming it, not garbage copied into each checkpoint.
    if (!tokenizer_.empty()) ctx_->tokenizer();
  }
  if (tokenizer_.empty() && cfg_.init_from().rfind("hf:", 0) == 0) {  // the HF model's own
    const io::HfTokenizerFiles t =
        io::detail::find_hf_tokenizer(io::resolve_hf_dir(cfg_.init_from().substr(3)));
    tokenizer_ = {t.vocab_json, t.merges_txt, t.tokenizer_json, t.tokenizer_config_json};
  }
  hf_config_ = source_hf_config(cfg_.init_from());
  if (writer_)
    metrics_ = std::make_unique<MetricsLogger>(cfg_.output_dir(), cfg_.logging().tensorboard());
  resume_if_asked();
  // A resumed run replays nothing twice: records of steps after the checkpoint are dropped.
  if (metrics_) metrics_->truncate_after(step_);
}

Trainer::~Trainer() = default;

void Trainer::setup_grid(std::shared_ptr<Communicator> world) {
  const auto& par = cfg_.parallel();
  if (!world) {
    world = FakeCommunicator::create_world(1)[0];
  } else {
    // First collective of the job: ranks with different configs must not start training.
    dist::check_config_hash(*world, config::config_hash(cfg_));
    LOOM_CHECK_T(ConfigError, cfg_.device() != RunConfig::CUDA || world->size() == 1,
                 "train: device=CUDA on ", world->size(), " ranks: the trainer reduces over MPI "
                 "(CPU tensors) and does not drive the NCCL communicator yet; expected "
                 "device=CPU for a multi-rank run, or a single-process run on the GPU");
  }
  LOOM_CHECK_T(ConfigError, par.tp() * par.pp() * par.dp() == world->size(),
               "train: expected parallel.tp*pp*dp = world size ", world->size(), ", got tp=",
               par.tp(), " pp=", par.pp(), " dp=", par.dp(),
               "; hint: resolve the config with the job's world size");
  LOOM_CHECK_T(ConfigError,
               par.zero_stage() == 0 || cfg_.optimizer().type() != config::OptimizerConfig::SGD,
               "train: parallel.zero_stage=1 shards AdamW state; expected optimizer.type=ADAMW, "
               "got SGD");
  if (par.ordered_reduce()) world->set_ordered_reduce(true);
  grid_ = std::make_unique<ProcessGrid>(world, int(par.tp()), int(par.pp()), int(par.dp()));
  if (par.ordered_reduce()) grid_->dp_group().set_ordered_reduce(true);
  if (world->size() > 1) logging::set_rank_tag(grid_->tag(), grid_->global_rank());
  writer_ = grid_->global_rank() == 0;
}

void Trainer::resume_if_asked() {
  const std::string& resume = cfg_.checkpoint().resume();
  std::string dir;
  if (resume == "auto") {
    // Rank 0 picks the checkpoint so every rank resumes from the same one (shared filesystem);
    // a failure there (checkpoints exist but none is complete) ends every rank with its message.
    std::string error;
    if (writer_) {
      try {
        dir = io::find_latest_checkpoint(cfg_.checkpoint().dir());
      } catch (const CheckpointError& e) {
        error = e.what();
      }
    }
    dir = dist::broadcast_string(grid_->world(), dir, 0);
    error = dist::broadcast_string(grid_->world(), error, 0);
    if (!error.empty()) throw CheckpointError(error);
  } else if (resume != "none" && !resume.empty()) {
    dir = resume;
  }
  if (!dir.empty()) resume_from(dir);
  if (grid_->world().size() == 1) return;
  Tensor steps = Tensor::zeros({grid_->world().size()}, DType::I64);
  grid_->world().all_gather(steps, Tensor::from_vector<int64_t>({step_}, {1}));
  std::vector<int64_t> v = steps.to_vector<int64_t>();
  for (size_t r = 1; r < v.size(); ++r)
    LOOM_CHECK_T(CheckpointError, v[r] == v[0], "resume: rank ", r, " is at step ", v[r],
                 " but rank 0 is at step ", v[0], " (", dir.empty() ? "no checkpoint" : dir, ")");
}

void Trainer::resume_from(const std::string& dir) {
  // Verified before anything is read; each learner reads only this rank's pieces, all of them
  // before it changes anything.
  const io::CheckpointReader ck(dir);
  check_resume_model(cfg_.model(), ck);
  json state;
  try {
    state = json::parse(ck.meta().at("trainer"));
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + dir + ": meta.json has no valid \"trainer\" entry (" +
                          e.what() + ")");
  }
  policy_->load(ck, "model", "optim", state);
  for (auto& [prefix, learner] : stage_->learners())
    learner->load(ck, prefix, prefix + "_optim", state.value(prefix, json::object()));
  step_ = state.value("step", int64_t(0));
  stage_->set_state(state.dump(), dir);
  if (policy_->scaler() && state.contains("loss_scale")) {  // else: a run without scaling
    const json& l = state["loss_scale"];
    policy_->scaler()->set_state({l.value("scale", cfg_.loss_scale().init_scale()),
                                  l.value("growth_tracker", int64_t(0))});
  }
  LOG_RANK0(INFO) << "resumed from " << dir << " at step " << step_;
}

std::string Trainer::save(int64_t step) {
  io::Checkpoint ck;
  ck.step = step;
  json state = json::object();
  policy_->save(ck, "model", "optim", state);  // collective under ZeRO-1
  for (auto& [prefix, learner] : stage_->learners()) {
    json sub = json::object();
    learner->save(ck, prefix, prefix + "_optim", sub);
    state[prefix] = sub;
  }
  state["step"] = step;
  const json stage_state = json::parse(stage_->state());
  for (auto& [key, value] : stage_state.items()) state[key] = value;
  if (optim::LossScaler* sc = policy_->scaler())
    state["loss_scale"] = {{"scale", sc->state().scale},
                           {"growth_tracker", sc->state().growth_tracker},
                           {"skipped_steps", sc->skipped_steps()}};
  ck.meta["trainer"] = state.dump();
  ck.meta["config"] = config::to_text(cfg_);
  if (!hf_config_.empty()) ck.meta["hf_config"] = hf_config_;  // what an HF export starts from
  ck.tokenizer = tokenizer_;
  return io::save_checkpoint(cfg_.checkpoint().dir(), ck, int(cfg_.checkpoint().keep_last()),
                             grid_->world());
}

Metrics Trainer::evaluate_metrics() {
  policy_->model().eval();
  Metrics m = stage_->evaluate(*policy_, cfg_.eval().steps());
  policy_->model().train();
  return m;
}

double Trainer::evaluate() {
  Metrics m = evaluate_metrics();
  return m.empty() ? std::numeric_limits<double>::quiet_NaN() : m.front().second;
}

MetricRecord Trainer::step_record(int64_t step, const StepResult& r, double tps,
                                  double seconds) const {
  MetricRecord rec{{"step", double(step)},      {"loss", r.loss},
                   {"lr", schedule_.lr_at(step - 1)}, {"grad_norm", r.grad_norm},
                   {"tokens_per_s", tps},       {"step_ms", seconds * 1e3}};
  rec.insert(rec.end(), r.metrics.begin(), r.metrics.end());
  if (optim::LossScaler* sc = policy_->scaler()) {
    rec.emplace_back("loss_scale", sc->scale());
    rec.emplace_back("skipped_steps", double(sc->skipped_steps()));
  }
  return rec;
}

std::pair<int, bool> Trainer::agree_on_stop(int64_t step, double seconds_since_save) {
  Communicator& world = grid_->world();
  // Fault injection for the preemption tests: LOOM_TEST_STOP_AT_STEP=N[:RANK] sends this process
  // SIGTERM at the end of step N (on global rank RANK only, when given).
  if (const char* at = std::getenv("LOOM_TEST_STOP_AT_STEP")) {
    char* rest = nullptr;
    const long long n = std::strtoll(at, &rest, 10);
    const bool this_rank = *rest != ':' || std::atoi(rest + 1) == world.rank();
    if (n == step && this_rank) std::raise(SIGTERM);
  }
  const double minutes = cfg_.checkpoint().time_interval();
  const bool due = world.rank() == 0 && minutes > 0 && seconds_since_save >= minutes * 60.0;
  if (world.size() == 1) return {stop_signal(), due};
  Tensor flags =
      Tensor::from_vector(std::vector<double>{double(stop_signal()), due ? 1.0 : 0.0}, {2});
  world.all_reduce(flags, ReduceOp::Max);
  const std::vector<double> v = flags.to_vector<double>();
  return {int(v[0]), v[1] != 0.0};
}

TrainSummary Trainer::run() {
  // bf16 autocast for every forward of the run (a no-op for F32; CUDA only, see check_precision).
  AutocastGuard autocast(cfg_.dtype() == RunConfig::BF16 ? DType::BF16 : DType::F32);
  TrainSummary s;
  s.first_step = step_ + 1;
  s.first_val_loss = s.last_val_loss = std::numeric_limits<double>::quiet_NaN();
  const int64_t max_steps = cfg_.max_steps();
  const int64_t tokens_per_step = cfg_.batch().global_batch_size() * cfg_.data().seq_len();
  const int64_t eval_every = cfg_.eval().interval(), ckpt_every = cfg_.checkpoint().interval();
  bool show = writer_ && cfg_.logging().progress() != config::LoggingConfig::OFF;
  // Under mpirun a rank's stdout is a pty even when the job's output goes to a file: plain lines.
  ProgressDisplay progress(max_steps, /*force_plain=*/grid_->world().size() > 1,
                           cfg_.logging().interval());
  auto do_eval = [&](int64_t step) {
    Metrics m = evaluate_metrics();
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
  policy_->model().train();
  auto last_save = std::chrono::steady_clock::now();
  auto checkpoint = [&](int64_t step) {
    s.last_checkpoint = save(step);
    last_save = std::chrono::steady_clock::now();
    if (show) progress.message("saved checkpoint " + s.last_checkpoint);
  };
  while (step_ < max_steps) {
    const int64_t step = step_ + 1;
    auto t0 = std::chrono::steady_clock::now();
    StepResult r = stage_->run_step(step, schedule_.lr_at(step - 1), *policy_);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    step_ = step;
    s.losses.push_back(r.loss);
    double tps = double(tokens_per_step) / dt;
    if (metrics_) metrics_->write(step_record(step, r, tps, dt));
    if (show) progress.update(step, r.loss, schedule_.lr_at(step - 1), tps);
    const auto [signal, time_due] = agree_on_stop(
        step, std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save).count());
    const bool eval_due = eval_every > 0 && step % eval_every == 0 && step != max_steps;
    if (signal != 0 && step != max_steps) {
      // The evaluation an uninterrupted run logs at this step: the resume starts after it.
      if (eval_due) do_eval(step);
      checkpoint(step);
      s.stop_signal = signal;
      if (show) progress.finish();
      s.last_step = step_;
      return s;
    }
    if (eval_due) do_eval(step);
    if (step != max_steps && ((ckpt_every > 0 && step % ckpt_every == 0) || time_due))
      checkpoint(step);
  }
  if (eval_every > 0) do_eval(step_);
  s.last_checkpoint = save(step_);
  if (show) {
    progress.message("saved checkpoint " + s.last_checkpoint);
    progress.finish();
  }
  s.last_step = step_;
  Tensor rss = Tensor::zeros({grid_->world().size()}, DType::F64);
  grid_->world().all_gather(rss, Tensor::full({1}, peak_rss_mb(), DType::F64));
  s.peak_rss_mb = rss.to_vector<double>();
  const Backend& be = backend_for(device_);
  const double tensor_mb = double(be.peak_allocated_bytes(device_.index)) / (1 << 20);
  Tensor tensors = Tensor::zeros({grid_->world().size()}, DType::F64);
  grid_->world().all_gather(tensors, Tensor::full({1}, tensor_mb, DType::F64));
  s.peak_tensor_mb = tensors.to_vector<double>();
  return s;
}

}  // namespace loom::train

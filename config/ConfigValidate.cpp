// Cross-field checks for RunConfig (see ConfigValidate.h). Each check_* function appends lines of
// the form "<field>=<value>: expected <what>" so a user sees all mistakes in one run.
#include "config/ConfigValidate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "core/util/Check.h"
#include "core/util/CheckedMath.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigFields.h"

namespace loom::config {

namespace {

// "name=value" with strings quoted, for problem lines.
template <class T>
std::string fv(const char* name, const T& v) {
  if constexpr (std::is_convertible_v<T, std::string>) {
    return detail::str_cat(name, "=\"", v, "\"");
  } else if constexpr (std::is_same_v<T, bool>) {
    return detail::str_cat(name, "=", v ? "true" : "false");
  } else {
    return detail::str_cat(name, "=", v);
  }
}

class Problems {
 public:
  template <class... Args>
  void expect(bool ok, const Args&... what) {
    if (!ok) lines_.push_back(detail::str_cat(what...));
  }
  std::vector<std::string> take() {
    std::vector<std::string> out = std::move(lines_);
    lines_.clear();
    return out;
  }

 private:
  std::vector<std::string> lines_;
};

namespace pb = google::protobuf;

// Upper bounds of the size fields (documented next to each field in Config.proto): far beyond any
// real run, and small enough that every product the trainer and `loom plan` form from them fits in
// int64. Any other integer field is bounded by kMaxCount.
constexpr int64_t kMaxCount = int64_t(1) << 40;  // steps, intervals, counters
const std::map<std::string, int64_t>& size_bounds() {
  static const std::map<std::string, int64_t> bounds = {
      {"model.n_layer", 4096},
      {"model.n_head", 4096},
      {"model.n_embd", int64_t(1) << 17},
      {"model.vocab_size", int64_t(1) << 24},
      {"model.vocab_pad_multiple", 65536},
      {"model.block_size", int64_t(1) << 20},
      {"model.intermediate_size", int64_t(1) << 20},
      {"model.n_kv_head", 4096},
      {"parallel.tp", 65536},
      {"parallel.pp", 65536},
      {"parallel.dp", 65536},
      {"parallel.micro_batches", int64_t(1) << 24},
      {"data.seq_len", int64_t(1) << 20},
      {"batch.micro_batch_size", 65536},
      {"batch.global_batch_size", int64_t(1) << 24},
      {"checkpoint.keep_last", int64_t(1) << 20},
      {"ppo.epochs", 65536},
      {"ppo.mini_batches", 65536},
      {"ppo.rollout.max_new_tokens", int64_t(1) << 20},
      {"ppo.rollout.top_k", int64_t(1) << 24},
      {"ppo.rollout.batch_size", 65536},
      {"ppo.group_size", 65536},
      {"ppo.overlong_buffer", int64_t(1) << 20},
  };
  return bounds;
}
// Tokens in one micro-batch on one rank (micro_batch_size * seq_len).
constexpr int64_t kMaxMicroBatchTokens = int64_t(1) << 24;

void check_schema(const pb::Message& msg, const std::string& prefix, Problems& P);

// One value of field f of msg: element `index` of a repeated field, or the field (index < 0).
void check_value(const pb::Message& msg, const pb::FieldDescriptor* f, int index,
                 const std::string& path, Problems& P) {
  const pb::Reflection& r = *msg.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      check_schema(rep ? r.GetRepeatedMessage(msg, f, index) : r.GetMessage(msg, f), path + ".", P);
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      const int v = rep ? r.GetRepeatedEnumValue(msg, f, index) : r.GetEnumValue(msg, f);
      const pb::EnumValueDescriptor* ev = f->enum_type()->FindValueByNumber(v);
      P.expect(ev != nullptr && v != 0, path, "=", ev ? ev->name() : std::to_string(v),
               ": expected one of ", enum_names(*f->enum_type()));
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      const bool dbl = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE;
      const double v = rep ? (dbl ? r.GetRepeatedDouble(msg, f, index)
                                  : r.GetRepeatedFloat(msg, f, index))
                           : (dbl ? r.GetDouble(msg, f) : r.GetFloat(msg, f));
      P.expect(std::isfinite(v), path, "=", v, ": expected a finite number");
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_INT64:
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      const bool i64 = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64;
      const int64_t v = rep ? (i64 ? r.GetRepeatedInt64(msg, f, index)
                                   : r.GetRepeatedInt32(msg, f, index))
                            : (i64 ? r.GetInt64(msg, f) : r.GetInt32(msg, f));
      auto it = size_bounds().find(path);
      const int64_t hi = it == size_bounds().end() ? kMaxCount : it->second;
      P.expect(v <= hi && v >= -kMaxCount, path, "=", v, ": expected <= ", hi);
      break;
    }
    default:
      break;
  }
}

// Every set field of the schema, generically (protobuf reflection), so a new field is covered
// without a new check: enum values must be named values of their enum (proto3 enums accept any
// number in text, JSON and --set), floating-point values must be finite, integers must be within
// their bound. Elements of a repeated field are named "<field>[<index>]".
void check_schema(const pb::Message& msg, const std::string& prefix, Problems& P) {
  const pb::Reflection& r = *msg.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r.ListFields(msg, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const std::string path = prefix + f->name();
    if (!f->is_repeated()) {
      check_value(msg, f, -1, path, P);
      continue;
    }
    for (int i = 0; i < r.FieldSize(msg, f); ++i)
      check_value(msg, f, i, detail::str_cat(path, "[", i, "]"), P);
  }
}

void check_parallel(const RunConfig& c, int world, Problems& P) {
  const ParallelConfig& p = c.parallel();
  P.expect(p.tp() >= 1, fv("parallel.tp", p.tp()), ": expected >= 1");
  P.expect(p.pp() >= 1, fv("parallel.pp", p.pp()), ": expected >= 1");
  if (p.tp() >= 1 && p.pp() >= 1) {
    if (!p.has_dp() || p.dp() == 0) {
      P.expect(false, fv("parallel.tp", p.tp()), " * ", fv("parallel.pp", p.pp()), " = ",
               p.tp() * p.pp(), ": expected to divide the world size ", world,
               " (parallel.dp is unset, so it is derived as world / (tp * pp))");
    } else if (p.dp() < 1) {
      P.expect(false, fv("parallel.dp", p.dp()), ": expected >= 1 (or 0/unset to derive it)");
    } else {
      P.expect(p.tp() * p.pp() * p.dp() == world, fv("parallel.tp", p.tp()), " * ",
               fv("parallel.pp", p.pp()), " * ", fv("parallel.dp", p.dp()), " = ",
               p.tp() * p.pp() * p.dp(), ": expected to equal the world size ", world);
    }
  }
  P.expect(p.zero_stage() == 0 || p.zero_stage() == 1, fv("parallel.zero_stage", p.zero_stage()),
           ": expected 0 or 1");
  int64_t ga = grad_accum_steps(c);
  if (ga <= 0) return;  // check_batch reports the batch sizes
  P.expect(p.micro_batches() == ga, fv("parallel.micro_batches", p.micro_batches()),
           ": expected to equal the gradient accumulation steps ", ga, " = ",
           fv("batch.global_batch_size", c.batch().global_batch_size()), " / (",
           fv("batch.micro_batch_size", c.batch().micro_batch_size()), " * ",
           fv("parallel.dp", p.dp()), "); leave it unset to derive it");
  if (p.pp() > 1 && p.schedule() == ParallelConfig::ONE_F_ONE_B) {
    P.expect(
        ga >= p.pp(), fv("parallel.micro_batches", ga), ": expected >= ", fv("parallel.pp", p.pp()),
        " for the 1F1B schedule; raise batch.global_batch_size=", c.batch().global_batch_size());
  }
}

// The Llama-family fields: grouped-query heads and how they split over TP, the MLP width, the
// norm and the rotary embedding.
void check_attention_and_mlp(const RunConfig& c, Problems& P) {
  const ModelConfig& m = c.model();
  const int64_t tp = c.parallel().tp(), kv = m.n_kv_head();
  P.expect(kv >= 1, fv("model.n_kv_head", kv), ": expected >= 1");
  if (kv >= 1 && m.n_head() >= 1) {
    P.expect(m.n_head() % kv == 0, fv("model.n_kv_head", kv), ": expected a divisor of ",
             fv("model.n_head", m.n_head()), " (each key/value head serves n_head / n_kv_head ",
             "query heads)");
  }
  // Only when n_head splits over tp: otherwise that problem is reported and this one follows from it.
  if (kv >= 1 && tp >= 1 && m.n_head() % tp == 0) {
    P.expect(kv % tp == 0 || tp % kv == 0, fv("model.n_kv_head", kv), ": expected a multiple ",
             "or a divisor of ", fv("parallel.tp", tp), " (kv heads are split over the TP ranks, ",
             "or replicated when tp > n_kv_head)");
  }
  P.expect(m.intermediate_size() >= 1, fv("model.intermediate_size", m.intermediate_size()),
           ": expected >= 1");
  if (tp >= 1 && m.intermediate_size() >= 1) {
    P.expect(m.intermediate_size() % tp == 0, fv("model.intermediate_size", m.intermediate_size()),
             ": expected a multiple of ", fv("parallel.tp", tp),
             " (the MLP is split across tensor-parallel ranks)");
  }
}

void check_architecture(const RunConfig& c, Problems& P) {
  const ModelConfig& m = c.model();
  check_attention_and_mlp(c, P);
  P.expect(m.norm_eps() >= 0.0, fv("model.norm_eps", m.norm_eps()), ": expected >= 0");
  if (m.position() != ModelConfig::ROPE) return;
  if (m.n_head() >= 1 && m.n_embd() % m.n_head() == 0) {
    P.expect((m.n_embd() / m.n_head()) % 2 == 0, fv("model.n_embd", m.n_embd()), " / ",
             fv("model.n_head", m.n_head()), ": expected an even head size (rotary embeddings ",
             "rotate pairs of dimensions)");
  }
  P.expect(m.rope_theta() > 0.0, fv("model.rope_theta", m.rope_theta()), ": expected > 0");
  const RopeScaling& r = m.rope_scaling();
  if (r.type() == RopeScaling::NONE) return;
  P.expect(r.factor() > 0.0, fv("model.rope_scaling.factor", r.factor()), ": expected > 0");
  if (r.type() != RopeScaling::LLAMA3) return;
  P.expect(r.low_freq_factor() > 0.0,
           fv("model.rope_scaling.low_freq_factor", r.low_freq_factor()), ": expected > 0");
  P.expect(r.high_freq_factor() > r.low_freq_factor(),
           fv("model.rope_scaling.high_freq_factor", r.high_freq_factor()), ": expected > ",
           fv("model.rope_scaling.low_freq_factor", r.low_freq_factor()));
  P.expect(r.original_max_positions() >= 1,
           fv("model.rope_scaling.original_max_positions", r.original_max_positions()),
           ": expected >= 1");
}

void check_model(const RunConfig& c, Problems& P) {
  const ModelConfig& m = c.model();
  if (m.has_preset() && !m.preset().empty() && m.preset() != "custom") {
    std::string names;
    for (const ModelPreset& p : model_presets()) names += std::string(p.name) + ", ";
    P.expect(find_preset(m.preset()) != nullptr, fv("model.preset", m.preset()),
             ": expected one of ", names, "custom");
  }
  P.expect(m.n_layer() >= 1, fv("model.n_layer", m.n_layer()), ": expected >= 1");
  P.expect(m.n_head() >= 1, fv("model.n_head", m.n_head()), ": expected >= 1");
  P.expect(m.n_embd() >= 1, fv("model.n_embd", m.n_embd()), ": expected >= 1");
  P.expect(m.vocab_size() >= 1, fv("model.vocab_size", m.vocab_size()), ": expected >= 1");
  P.expect(m.block_size() >= 1, fv("model.block_size", m.block_size()), ": expected >= 1");
  P.expect(m.vocab_pad_multiple() >= 1, fv("model.vocab_pad_multiple", m.vocab_pad_multiple()),
           ": expected >= 1");
  if (m.n_head() >= 1 && m.n_embd() >= 1) {
    P.expect(m.n_embd() % m.n_head() == 0, fv("model.n_embd", m.n_embd()),
             ": expected a multiple of ", fv("model.n_head", m.n_head()));
  }
  int64_t tp = c.parallel().tp(), pp = c.parallel().pp();
  if (tp >= 1 && m.n_head() >= 1) {
    P.expect(m.n_head() % tp == 0, fv("model.n_head", m.n_head()), ": expected a multiple of ",
             fv("parallel.tp", tp), " (heads are split across tensor-parallel ranks)");
  }
  if (pp >= 1 && m.n_layer() >= 1) {
    P.expect(m.n_layer() % pp == 0, fv("model.n_layer", m.n_layer()), ": expected a multiple of ",
             fv("parallel.pp", pp), " (layers are split evenly across pipeline stages)");
  }
  P.expect(m.dropout() >= 0.0 && m.dropout() < 1.0, fv("model.dropout", m.dropout()),
           ": expected a value in [0, 1)");
  P.expect(m.init_std() > 0.0, fv("model.init_std", m.init_std()), ": expected > 0");
  check_architecture(c, P);
}

void check_batch_and_data(const RunConfig& c, Problems& P) {
  const BatchConfig& b = c.batch();
  int64_t dp = c.parallel().dp();
  P.expect(b.micro_batch_size() >= 1, fv("batch.micro_batch_size", b.micro_batch_size()),
           ": expected >= 1");
  // NB: global_batch_size stays unset only when dp could not be derived (reported elsewhere).
  if (b.has_global_batch_size()) {
    P.expect(b.global_batch_size() >= 1, fv("batch.global_batch_size", b.global_batch_size()),
             ": expected >= 1");
  }
  if (b.micro_batch_size() >= 1 && b.global_batch_size() >= 1 && dp >= 1) {
    int64_t per_step = b.micro_batch_size() * dp;
    P.expect(
        b.global_batch_size() % per_step == 0 && b.global_batch_size() >= per_step,
        fv("batch.global_batch_size", b.global_batch_size()), ": expected a positive multiple of ",
        fv("batch.micro_batch_size", b.micro_batch_size()), " * ", fv("parallel.dp", dp), " = ",
        per_step, " (gradient accumulation = global / (micro * dp) must be an integer >= 1)");
  }
  const DataConfig& d = c.data();
  P.expect(d.seq_len() >= 1 && d.seq_len() <= c.model().block_size(),
           fv("data.seq_len", d.seq_len()), ": expected a value in [1, ",
           fv("model.block_size", c.model().block_size()), "]");
  if (!d.tokenizer_json().empty()) {
    P.expect(d.tokenizer_vocab().empty() && d.tokenizer_merges().empty(),
             fv("data.tokenizer_json", d.tokenizer_json()), ": expected either tokenizer_json or ",
             fv("data.tokenizer_vocab", d.tokenizer_vocab()), " + ",
             fv("data.tokenizer_merges", d.tokenizer_merges()), ", not both");
  } else {
    P.expect(d.tokenizer_vocab().empty() == d.tokenizer_merges().empty(),
             fv("data.tokenizer_vocab", d.tokenizer_vocab()), " and ",
             fv("data.tokenizer_merges", d.tokenizer_merges()), ": expected both or neither");
  }
}

void check_optimizer(const RunConfig& c, Problems& P) {
  const OptimizerConfig& o = c.optimizer();
  P.expect(o.lr() > 0.0 && std::isfinite(o.lr()), fv("optimizer.lr", o.lr()), ": expected > 0");
  P.expect(o.beta1() >= 0.0 && o.beta1() < 1.0, fv("optimizer.beta1", o.beta1()),
           ": expected a value in [0, 1)");
  P.expect(o.beta2() >= 0.0 && o.beta2() < 1.0, fv("optimizer.beta2", o.beta2()),
           ": expected a value in [0, 1)");
  P.expect(o.eps() > 0.0, fv("optimizer.eps", o.eps()), ": expected > 0");
  P.expect(o.weight_decay() >= 0.0, fv("optimizer.weight_decay", o.weight_decay()),
           ": expected >= 0");
  P.expect(o.grad_clip() >= 0.0, fv("optimizer.grad_clip", o.grad_clip()),
           ": expected >= 0 (0 = no clipping)");
  P.expect(o.momentum() >= 0.0 && o.momentum() < 1.0, fv("optimizer.momentum", o.momentum()),
           ": expected a value in [0, 1)");
  if (o.nesterov()) {
    P.expect(o.type() == OptimizerConfig::SGD && o.momentum() > 0.0, fv("optimizer.nesterov", true),
             ": expected optimizer.type=SGD with ", fv("optimizer.momentum", o.momentum()), " > 0");
  }
  const LrScheduleConfig& s = c.schedule();
  P.expect(s.warmup_steps() >= 0, fv("schedule.warmup_steps", s.warmup_steps()), ": expected >= 0");
  if (c.max_steps() > 0) {
    P.expect(s.warmup_steps() <= c.max_steps(), fv("schedule.warmup_steps", s.warmup_steps()),
             ": expected <= ", fv("max_steps", c.max_steps()));
  }
  if (s.has_decay_steps()) {
    P.expect(s.decay_steps() >= 1, fv("schedule.decay_steps", s.decay_steps()), ": expected >= 1");
  }
  if (s.has_min_lr()) {
    P.expect(!s.has_min_lr_ratio(), fv("schedule.min_lr", s.min_lr()), " and ",
             fv("schedule.min_lr_ratio", s.min_lr_ratio()), ": expected only one of them");
    P.expect(s.min_lr() >= 0.0 && s.min_lr() <= o.lr(), fv("schedule.min_lr", s.min_lr()),
             ": expected a value in [0, ", fv("optimizer.lr", o.lr()), "]");
  } else {
    P.expect(s.min_lr_ratio() >= 0.0 && s.min_lr_ratio() <= 1.0,
             fv("schedule.min_lr_ratio", s.min_lr_ratio()), ": expected a value in [0, 1]");
  }
}

void check_run(const RunConfig& c, Problems& P) {
  P.expect(c.max_steps() > 0,
           "max_steps=", c.has_max_steps() ? std::to_string(c.max_steps()) : std::string("unset"),
           ": expected > 0");
  P.expect(!c.output_dir().empty(), fv("output_dir", c.output_dir()), ": expected a directory");
  P.expect(c.eval().interval() >= 0, fv("eval.interval", c.eval().interval()),
           ": expected >= 0 (0 = off)");
  P.expect(c.eval().steps() >= 1, fv("eval.steps", c.eval().steps()), ": expected >= 1");
  P.expect(c.checkpoint().interval() >= 0, fv("checkpoint.interval", c.checkpoint().interval()),
           ": expected >= 0 (0 = only at the end)");
  P.expect(c.checkpoint().time_interval() >= 0,
           fv("checkpoint.time_interval", c.checkpoint().time_interval()),
           ": expected >= 0 minutes (0 = off)");
  P.expect(c.checkpoint().keep_last() >= 0, fv("checkpoint.keep_last", c.checkpoint().keep_last()),
           ": expected >= 0 (0 = keep all)");
  P.expect(!c.checkpoint().dir().empty(), fv("checkpoint.dir", c.checkpoint().dir()),
           ": expected a directory");
  P.expect(!c.checkpoint().resume().empty(), fv("checkpoint.resume", c.checkpoint().resume()),
           ": expected \"auto\", \"none\" or a checkpoint path");
  P.expect(c.logging().interval() >= 0, fv("logging.interval", c.logging().interval()),
           ": expected >= 0 (0 = off)");
  P.expect(c.init_from() != "hf:", fv("init_from", c.init_from()),
           ": expected \"hf:DIR\" with a directory after the colon");
}

void check_precision(const RunConfig& c, Problems& P) {
  if (c.dtype() == RunConfig::F16) {
    P.expect(c.has_loss_scale(), "dtype=F16: expected a loss_scale { ... } block (f16 needs ",
             "loss scaling; e.g. loss_scale { init_scale: 65536 }), got loss_scale=unset");
  }
  if (!c.has_loss_scale()) return;
  const LossScaleConfig& l = c.loss_scale();
  P.expect(l.init_scale() > 0.0, fv("loss_scale.init_scale", l.init_scale()), ": expected > 0");
  P.expect(l.growth_factor() > 1.0, fv("loss_scale.growth_factor", l.growth_factor()),
           ": expected > 1");
  P.expect(l.backoff_factor() > 0.0 && l.backoff_factor() < 1.0,
           fv("loss_scale.backoff_factor", l.backoff_factor()), ": expected a value in (0, 1)");
  P.expect(l.growth_interval() >= 1, fv("loss_scale.growth_interval", l.growth_interval()),
           ": expected >= 1");
}

// A field of an algorithm other than ppo.algorithm is a mistake, not something to ignore.
void check_ppo_algorithm(const PpoConfig& p, Problems& P) {
  const std::string algo = PpoConfig::Algorithm_Name(p.algorithm());
  const auto A = p.algorithm();
  auto only = [&](bool has, const char* field, const char* algos) {
    P.expect(!has, "ppo.", field, " is set: expected it only with ppo.algorithm=", algos,
             ", got ppo.algorithm=", algo);
  };
  if (A != PpoConfig::PPO) {
    only(p.has_critic_init(), "critic_init", "PPO");
    only(p.has_lam(), "lam", "PPO");
    only(p.has_value_clip(), "value_clip", "PPO");
  }
  if (A != PpoConfig::PPO && A != PpoConfig::REINFORCE_PP)
    only(p.has_gamma(), "gamma", "PPO or REINFORCE_PP");
  if (A != PpoConfig::GRPO) {
    only(p.has_kl_estimator(), "kl_estimator", "GRPO");
    only(p.has_scale_by_std(), "scale_by_std", "GRPO");
  }
  const bool grouped = A == PpoConfig::GRPO || A == PpoConfig::RLOO;
  P.expect(p.group_size() >= (grouped ? 2 : 1), fv("ppo.group_size", p.group_size()),
           ": expected >= ", grouped ? 2 : 1, " samples per prompt for ppo.algorithm=", algo);
  if (p.drop_equal_reward_groups()) {
    P.expect(p.group_size() >= 2, fv("ppo.drop_equal_reward_groups", true),
             ": expected ppo.group_size >= 2 (groups of samples of one prompt), got ",
             p.group_size());
  }
  const int64_t rows = p.rollout().batch_size() * p.group_size();
  if (rows >= 1 && p.mini_batches() >= 1) {
    P.expect(rows % p.mini_batches() == 0, fv("ppo.mini_batches", p.mini_batches()),
             ": expected a divisor of ppo.rollout.batch_size * ppo.group_size = ", rows,
             " (the samples of one rollout per rank)");
  }
}

void check_extract(const AnswerExtractConfig& e, const std::string& path, Problems& P) {
  if (e.kind() == AnswerExtractConfig::REGEX) {
    P.expect(!e.regex().empty(), fv((path + ".regex").c_str(), e.regex()),
             ": expected a pattern for ", path, ".kind=REGEX");
  } else {
    P.expect(e.regex().empty(), fv((path + ".regex").c_str(), e.regex()), ": expected ", path,
             ".kind=REGEX to use it");
  }
}

// One source of ppo.reward; returns whether it is the reward model.
bool check_reward_source(const RewardSourceConfig& r, const std::string& path, Problems& P) {
  auto field = [&](const char* f) { return path + "." + f; };
  switch (r.kind_case()) {
    case RewardSourceConfig::kRewardModel:
      return true;
    case RewardSourceConfig::kExactMatch:
      P.expect(!r.exact_match().reference_field().empty(), field("exact_match.reference_field"),
               "=\"\": expected the prompt record's field holding the answer");
      check_extract(r.exact_match().extract(), field("exact_match.extract"), P);
      break;
    case RewardSourceConfig::kRegex:
      P.expect(!r.regex().pattern().empty(), field("regex.pattern"), "=\"\": expected a pattern");
      break;
    case RewardSourceConfig::kNumeric:
      P.expect(!r.numeric().reference_field().empty(), field("numeric.reference_field"),
               "=\"\": expected the prompt record's field holding the answer");
      P.expect(r.numeric().tolerance() >= 0, field("numeric.tolerance"), "=",
               r.numeric().tolerance(), ": expected >= 0");
      check_extract(r.numeric().extract(), field("numeric.extract"), P);
      break;
    case RewardSourceConfig::kLengthPenalty:
      P.expect(r.length_penalty().target() >= 0, field("length_penalty.target"), "=",
               r.length_penalty().target(), ": expected >= 0");
      P.expect(r.length_penalty().per_unit() > 0, field("length_penalty.per_unit"), "=",
               r.length_penalty().per_unit(), ": expected > 0 (the penalty per unit of length)");
      break;
    case RewardSourceConfig::kFormatPenalty:
      P.expect(!r.format_penalty().pattern().empty(), field("format_penalty.pattern"),
               "=\"\": expected a pattern");
      P.expect(r.format_penalty().penalty() >= 0, field("format_penalty.penalty"), "=",
               r.format_penalty().penalty(), ": expected >= 0");
      break;
    case RewardSourceConfig::kCommand:
      P.expect(r.command().argv_size() > 0 && !r.command().argv(0).empty(), field("command.argv"),
               ": expected the checker program and its arguments, got none");
      P.expect(r.command().timeout_s() > 0, field("command.timeout_s"), "=",
               r.command().timeout_s(), ": expected > 0 seconds");
      break;
    case RewardSourceConfig::KIND_NOT_SET:
      P.expect(false, path, ": expected one of reward_model, exact_match, regex, numeric, ",
               "length_penalty, format_penalty, command");
      break;
  }
  return false;
}

void check_reward_sources(const PpoConfig& p, Problems& P) {
  if (p.reward_size() == 0) {
    P.expect(false, fv("ppo.reward_model", p.reward_model()),
             ": expected a reward model checkpoint, or reward sources in ppo.reward (e.g. reward "
             "{ exact_match { reference_field: \"answer\" } })");
    return;
  }
  std::map<std::string, int> names;
  std::string rm_source;
  for (int i = 0; i < p.reward_size(); ++i) {
    const std::string path = detail::str_cat("ppo.reward[", i, "]");
    const RewardSourceConfig& r = p.reward(i);
    if (check_reward_source(r, path, P)) rm_source = path;
    auto [it, fresh] = names.emplace(r.name(), i);
    P.expect(!r.name().empty() && fresh, fv((path + ".name").c_str(), r.name()),
             ": expected a non-empty name unique in ppo.reward",
             fresh ? std::string() : detail::str_cat(" (ppo.reward[", it->second, "] has it)"));
  }
  if (!rm_source.empty()) {
    P.expect(!p.reward_model().empty(), fv("ppo.reward_model", p.reward_model()),
             ": expected a reward model checkpoint for the reward_model source ", rm_source);
  } else {
    P.expect(p.reward_model().empty(), fv("ppo.reward_model", p.reward_model()),
             ": expected a reward_model {} source in ppo.reward to use it (the reward is the "
             "weighted sum of ppo.reward; a critic takes ppo.critic_init)");
  }
}

void check_ppo(const RunConfig& c, Problems& P) {
  const PpoConfig& p = c.ppo();
  P.expect(!p.prompts_path().empty(), fv("ppo.prompts_path", p.prompts_path()),
           ": expected a prompt dataset for stage PPO");
  P.expect(!c.init_from().empty(), fv("init_from", c.init_from()),
           ": expected the SFT checkpoint that initialises the policy");
  P.expect(p.kl_coef() >= 0.0, fv("ppo.kl_coef", p.kl_coef()), ": expected >= 0");
  P.expect(p.kl_target() > 0.0, fv("ppo.kl_target", p.kl_target()), ": expected > 0");
  if (p.adaptive_kl())  // the adaptive controller divides by the horizon
    P.expect(p.kl_horizon() >= 1, fv("ppo.kl_horizon", p.kl_horizon()),
             ": expected >= 1 with ppo.adaptive_kl=true");
  P.expect(p.gamma() >= 0.0 && p.gamma() <= 1.0, fv("ppo.gamma", p.gamma()), ": expected [0, 1]");
  P.expect(p.lam() >= 0.0 && p.lam() <= 1.0, fv("ppo.lam", p.lam()), ": expected [0, 1]");
  P.expect(p.clip() > 0.0 && p.clip() < 1.0, fv("ppo.clip", p.clip()), ": expected (0, 1)");
  P.expect(p.clip_high() > 0.0, fv("ppo.clip_high", p.clip_high()), ": expected > 0");
  if (p.algorithm() == PpoConfig::PPO)
    P.expect(p.value_clip() > 0.0, fv("ppo.value_clip", p.value_clip()), ": expected > 0");
  P.expect(p.missing_eos_penalty() >= 0.0, fv("ppo.missing_eos_penalty", p.missing_eos_penalty()),
           ": expected >= 0");
  if (p.missing_eos_penalty() > 0.0) {
    P.expect(p.truncated_responses() == PpoConfig::KEEP,
             fv("ppo.missing_eos_penalty", p.missing_eos_penalty()),
             ": expected ppo.truncated_responses=KEEP (MASK, the default, leaves responses cut "
             "without EOS out of the loss, so a penalty on their score does nothing)");
  }
  P.expect(p.epochs() >= 1, fv("ppo.epochs", p.epochs()), ": expected >= 1");
  P.expect(p.mini_batches() >= 1, fv("ppo.mini_batches", p.mini_batches()), ": expected >= 1");
  P.expect(p.sample_interval() >= 0, fv("ppo.sample_interval", p.sample_interval()),
           ": expected >= 0 (0 = off)");
  const RolloutConfig& r = p.rollout();
  P.expect(p.overlong_buffer() >= 0 && p.overlong_buffer() <= r.max_new_tokens(),
           fv("ppo.overlong_buffer", p.overlong_buffer()), ": expected a value in [0, ",
           fv("ppo.rollout.max_new_tokens", r.max_new_tokens()), "] (0 = off)");
  P.expect(p.overlong_penalty_factor() >= 0.0,
           fv("ppo.overlong_penalty_factor", p.overlong_penalty_factor()), ": expected >= 0");
  P.expect(r.max_new_tokens() >= 1 && r.max_new_tokens() < c.model().block_size(),
           fv("ppo.rollout.max_new_tokens", r.max_new_tokens()), ": expected a value in [1, ",
           fv("model.block_size", c.model().block_size()), ")");
  P.expect(r.temperature() > 0.0, fv("ppo.rollout.temperature", r.temperature()), ": expected > 0");
  P.expect(r.top_k() >= 0, fv("ppo.rollout.top_k", r.top_k()), ": expected >= 0 (0 = off)");
  P.expect(r.top_p() > 0.0 && r.top_p() <= 1.0, fv("ppo.rollout.top_p", r.top_p()),
           ": expected a value in (0, 1]");
  P.expect(r.batch_size() >= 1, fv("ppo.rollout.batch_size", r.batch_size()), ": expected >= 1");
  check_ppo_algorithm(p, P);
  check_reward_sources(p, P);
}

void check_dpo(const RunConfig& c, Problems& P) {
  const DpoConfig& d = c.dpo();
  const bool simpo = d.loss_type() == DpoConfig::SIMPO;
  P.expect(!d.train_path().empty(), fv("dpo.train_path", d.train_path()),
           ": expected a preference dataset for stage DPO");
  if (simpo) {
    P.expect(!d.has_reference(), fv("dpo.reference", d.reference()),
             ": expected it unset with dpo.loss_type=SIMPO (reference-free)");
  } else {
    P.expect(!d.reference().empty(), fv("dpo.reference", d.reference()),
             ": expected a reference checkpoint (set dpo.reference or init_from)");
  }
  P.expect(d.beta() > 0.0, fv("dpo.beta", d.beta()), ": expected > 0");
  if (d.loss_type() == DpoConfig::CDPO) {
    P.expect(d.label_smoothing() >= 0.0 && d.label_smoothing() < 0.5,
             fv("dpo.label_smoothing", d.label_smoothing()), ": expected a value in [0, 0.5)");
  } else {
    P.expect(!d.has_label_smoothing(), "dpo.label_smoothing is set: expected it only with "
             "dpo.loss_type=CDPO");
  }
  if (simpo) {
    P.expect(d.simpo_gamma() >= 0.0, fv("dpo.simpo_gamma", d.simpo_gamma()), ": expected >= 0");
  } else {
    P.expect(!d.has_simpo_gamma(), "dpo.simpo_gamma is set: expected it only with "
             "dpo.loss_type=SIMPO");
  }
}

void check_stage(const RunConfig& c, Problems& P) {
  switch (c.stage()) {
    case RunConfig::PRETRAIN:
      P.expect(!c.data().train_path().empty(), fv("data.train_path", c.data().train_path()),
               ": expected a token dataset for stage PRETRAIN");
      break;
    case RunConfig::SFT:
      P.expect(!c.sft().train_path().empty(), fv("sft.train_path", c.sft().train_path()),
               ": expected a prompt/response dataset for stage SFT");
      break;
    case RunConfig::REWARD:
      P.expect(!c.reward().train_path().empty(), fv("reward.train_path", c.reward().train_path()),
               ": expected a preference dataset for stage REWARD");
      break;
    case RunConfig::PPO:
      check_ppo(c, P);
      break;
    case RunConfig::DPO:
      check_dpo(c, P);
      break;
    default:  // NB: an unknown number is reported by check_schema
      break;
  }
}

void check_lora(const RunConfig& c, Problems& P) {
  if (!c.has_lora()) return;
  const LoraConfig& l = c.lora();
  const RunConfig::Stage st = c.stage();
  P.expect(st == RunConfig::SFT || st == RunConfig::DPO || st == RunConfig::PPO, "lora is set "
           "with stage=", RunConfig::Stage_Name(st), ": expected stage SFT, DPO or PPO");
  P.expect(!c.init_from().empty(), "lora is set with init_from=\"\": expected the base model "
           "(a Loom checkpoint or hf:DIR) the adapters train on");
  P.expect(l.rank() >= 1, fv("lora.rank", l.rank()), ": expected >= 1");
  P.expect(l.alpha() > 0.0, fv("lora.alpha", l.alpha()), ": expected > 0");
  P.expect(l.dropout() >= 0.0 && l.dropout() < 1.0, fv("lora.dropout", l.dropout()),
           ": expected a value in [0, 1)");
  const std::vector<std::string> known = {"attn.qkv", "attn.q", "attn.kv", "attn.proj", "mlp.fc",
                                          "mlp.proj", "qkv", "q", "kv", "proj", "fc"};
  P.expect(l.target_modules_size() > 0, "lora.target_modules is empty: expected some of attn.qkv "
           "(or attn.q and attn.kv), attn.proj, mlp.fc, mlp.proj, or their last parts");
  for (int i = 0; i < l.target_modules_size(); ++i) {
    const std::string& t = l.target_modules(i);
    P.expect(std::find(known.begin(), known.end(), t) != known.end(),
             fv(detail::str_cat("lora.target_modules[", i, "]").c_str(), t), ": expected one of "
             "attn.qkv, attn.q, attn.kv, attn.proj, mlp.fc, mlp.proj (or their last parts)");
  }
}

}  // namespace

int64_t size_bound(const std::string& field) {
  auto it = size_bounds().find(field);
  return it == size_bounds().end() ? kMaxCount : it->second;
}

std::vector<std::string> find_problems(const RunConfig& cfg, int world_size) {
  RunConfig c = cfg;
  apply_defaults(c, world_size);
  Problems P;
  check_schema(c, "", P);
  std::optional<int64_t> tokens = try_mul(c.batch().micro_batch_size(), c.data().seq_len());
  P.expect(tokens && *tokens <= kMaxMicroBatchTokens,
           fv("batch.micro_batch_size", c.batch().micro_batch_size()), " * ",
           fv("data.seq_len", c.data().seq_len()), ": expected at most ", kMaxMicroBatchTokens,
           " tokens per micro-batch");
  std::vector<std::string> schema = P.take();
  // NB: the cross-field checks multiply sizes; with one out of its bounds they could overflow, so
  // the bounds are fixed first.
  if (!schema.empty()) return schema;
  P.expect(world_size >= 1, "world_size=", world_size, ": expected >= 1");
  check_parallel(c, world_size, P);
  check_model(c, P);
  check_batch_and_data(c, P);
  check_optimizer(c, P);
  check_run(c, P);
  check_precision(c, P);
  check_stage(c, P);
  check_lora(c, P);
  return P.take();
}

void validate(const RunConfig& cfg, int world_size) {
  std::vector<std::string> problems = find_problems(cfg, world_size);
  if (problems.empty()) return;
  std::string msg =
      detail::str_cat("config: ", problems.size(), problems.size() == 1 ? " problem" : " problems",
                      " (world size ", world_size, "):");
  for (const std::string& p : problems) msg += "\n  - " + p;
  throw ConfigError(msg);
}

}  // namespace loom::config

// Default values and preset expansion for RunConfig (see ConfigDefaults.h; values documented in
// Config.proto next to each field).
#include "config/ConfigDefaults.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include "core/util/CheckedMath.h"

namespace loom::config {

// Sets field `f` of message `m` to `v` unless it was given explicitly.
#define LOOM_CFG_DEFAULT(m, f, v)       \
  do {                                  \
    if (!(m).has_##f()) (m).set_##f(v); \
  } while (0)

const std::vector<ModelPreset>& model_presets() {
  using M = ModelConfig;
  // The Llama-family rows are the released config.json values: hidden_size, num_hidden_layers,
  // num_attention_heads, num_key_value_heads, intermediate_size, vocab_size,
  // max_position_embeddings, rms_norm_eps, rope_theta, rope_scaling, tie_word_embeddings.
  static const std::vector<ModelPreset> presets = {
      {"gpt2-124m", 12, 12, 768, 50257, 1024},
      {"gpt2-350m", 24, 16, 1024, 50257, 1024},
      {"gpt2-774m", 36, 20, 1280, 50257, 1024},
      {"gpt2-1.5b", 48, 25, 1600, 50257, 1024},
      {.name = "llama-3.2-1b", .n_layer = 16, .n_head = 32, .n_embd = 2048, .vocab_size = 128256,
       .block_size = 131072, .norm = M::RMS_NORM, .norm_eps = 1e-5, .position = M::ROPE,
       .rope_theta = 500000.0, .rope_scaling = RopeScaling::LLAMA3, .rope_factor = 32.0,
       .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
       .rope_original_max_positions = 8192, .mlp = M::SWIGLU, .intermediate_size = 8192,
       .n_kv_head = 8, .bias = false, .qkv_bias = false, .tie_embeddings = true},
      {.name = "llama-3.2-3b", .n_layer = 28, .n_head = 24, .n_embd = 3072, .vocab_size = 128256,
       .block_size = 131072, .norm = M::RMS_NORM, .norm_eps = 1e-5, .position = M::ROPE,
       .rope_theta = 500000.0, .rope_scaling = RopeScaling::LLAMA3, .rope_factor = 32.0,
       .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
       .rope_original_max_positions = 8192, .mlp = M::SWIGLU, .intermediate_size = 8192,
       .n_kv_head = 8, .bias = false, .qkv_bias = false, .tie_embeddings = true},
      {.name = "llama-3.1-8b", .n_layer = 32, .n_head = 32, .n_embd = 4096, .vocab_size = 128256,
       .block_size = 131072, .norm = M::RMS_NORM, .norm_eps = 1e-5, .position = M::ROPE,
       .rope_theta = 500000.0, .rope_scaling = RopeScaling::LLAMA3, .rope_factor = 8.0,
       .rope_low_freq_factor = 1.0, .rope_high_freq_factor = 4.0,
       .rope_original_max_positions = 8192, .mlp = M::SWIGLU, .intermediate_size = 14336,
       .n_kv_head = 8, .bias = false, .qkv_bias = false, .tie_embeddings = false},
      {.name = "qwen2.5-0.5b", .n_layer = 24, .n_head = 14, .n_embd = 896, .vocab_size = 151936,
       .block_size = 32768, .norm = M::RMS_NORM, .norm_eps = 1e-6, .position = M::ROPE,
       .rope_theta = 1000000.0, .mlp = M::SWIGLU, .intermediate_size = 4864, .n_kv_head = 2,
       .bias = false, .qkv_bias = true, .tie_embeddings = true},
      {.name = "qwen2.5-1.5b", .n_layer = 28, .n_head = 12, .n_embd = 1536, .vocab_size = 151936,
       .block_size = 131072, .norm = M::RMS_NORM, .norm_eps = 1e-6, .position = M::ROPE,
       .rope_theta = 1000000.0, .mlp = M::SWIGLU, .intermediate_size = 8960, .n_kv_head = 2,
       .bias = false, .qkv_bias = true, .tie_embeddings = true},
      {.name = "qwen2.5-7b", .n_layer = 28, .n_head = 28, .n_embd = 3584, .vocab_size = 152064,
       .block_size = 131072, .norm = M::RMS_NORM, .norm_eps = 1e-6, .position = M::ROPE,
       .rope_theta = 1000000.0, .mlp = M::SWIGLU, .intermediate_size = 18944, .n_kv_head = 4,
       .bias = false, .qkv_bias = true, .tie_embeddings = false},
      // Mistral-7B-v0.3 (v0.1's sliding window of 4096 is not modelled; v0.3 has none).
      {.name = "mistral-7b", .n_layer = 32, .n_head = 32, .n_embd = 4096, .vocab_size = 32768,
       .block_size = 32768, .norm = M::RMS_NORM, .norm_eps = 1e-5, .position = M::ROPE,
       .rope_theta = 1000000.0, .mlp = M::SWIGLU, .intermediate_size = 14336, .n_kv_head = 8,
       .bias = false, .qkv_bias = false, .tie_embeddings = false},
  };
  return presets;
}

const ModelPreset* find_preset(const std::string& name) {
  for (const ModelPreset& p : model_presets())
    if (name == p.name) return &p;
  return nullptr;
}

void model_defaults(ModelConfig& m) {
  const ModelPreset* p = find_preset(m.preset());
  if (!p) p = find_preset("gpt2-124m");  // custom models default to the 124M shape
  LOOM_CFG_DEFAULT(m, n_layer, p->n_layer);
  LOOM_CFG_DEFAULT(m, n_head, p->n_head);
  LOOM_CFG_DEFAULT(m, n_embd, p->n_embd);
  LOOM_CFG_DEFAULT(m, vocab_size, p->vocab_size);
  LOOM_CFG_DEFAULT(m, block_size, p->block_size);
  LOOM_CFG_DEFAULT(m, vocab_pad_multiple, 1);
  LOOM_CFG_DEFAULT(m, dropout, 0.0);
  LOOM_CFG_DEFAULT(m, bias, p->bias);
  LOOM_CFG_DEFAULT(m, tie_embeddings, p->tie_embeddings);
  LOOM_CFG_DEFAULT(m, init_std, 0.02);
  LOOM_CFG_DEFAULT(m, norm, p->norm);
  LOOM_CFG_DEFAULT(m, norm_eps, p->norm_eps);
  LOOM_CFG_DEFAULT(m, position, p->position);
  LOOM_CFG_DEFAULT(m, rope_theta, p->rope_theta);
  RopeScaling& rs = *m.mutable_rope_scaling();
  LOOM_CFG_DEFAULT(rs, type, p->rope_scaling);
  LOOM_CFG_DEFAULT(rs, factor, p->rope_factor);
  LOOM_CFG_DEFAULT(rs, low_freq_factor, p->rope_low_freq_factor);
  LOOM_CFG_DEFAULT(rs, high_freq_factor, p->rope_high_freq_factor);
  LOOM_CFG_DEFAULT(rs, original_max_positions, p->rope_original_max_positions);
  LOOM_CFG_DEFAULT(m, mlp, p->mlp);
  // NB: sizes are not validated yet, so the product is checked (0 lets validate() report n_embd).
  LOOM_CFG_DEFAULT(m, intermediate_size,
                   p->intermediate_size > 0 ? p->intermediate_size
                                            : try_mul(4, m.n_embd()).value_or(0));
  LOOM_CFG_DEFAULT(m, n_kv_head, p->n_kv_head > 0 ? p->n_kv_head : m.n_head());
  // q/k/v biases follow `bias` unless the preset sets them apart (Qwen2).
  LOOM_CFG_DEFAULT(m, qkv_bias, p->qkv_bias != p->bias ? p->qkv_bias : m.bias());
}

namespace {

void parallel_and_batch_defaults(RunConfig& cfg, int world_size) {
  ParallelConfig& p = *cfg.mutable_parallel();
  LOOM_CFG_DEFAULT(p, tp, 1);
  LOOM_CFG_DEFAULT(p, pp, 1);
  // NB: sizes are not validated yet (validate() runs after this), so products are checked.
  int64_t tp_pp = try_mul(p.tp(), p.pp()).value_or(0);
  if ((!p.has_dp() || p.dp() == 0) && tp_pp > 0 && world_size > 0 && world_size % tp_pp == 0)
    p.set_dp(world_size / tp_pp);
  LOOM_CFG_DEFAULT(p, schedule, ParallelConfig::ONE_F_ONE_B);
  LOOM_CFG_DEFAULT(p, zero_stage, 0);
  LOOM_CFG_DEFAULT(p, ordered_reduce, false);

  BatchConfig& b = *cfg.mutable_batch();
  LOOM_CFG_DEFAULT(b, micro_batch_size, 4);
  std::optional<int64_t> global = try_mul(b.micro_batch_size(), p.dp());
  if (p.dp() > 0 && global) LOOM_CFG_DEFAULT(b, global_batch_size, *global);
  int64_t ga = grad_accum_steps(cfg);
  if (ga > 0) LOOM_CFG_DEFAULT(p, micro_batches, ga);
}

void optimizer_defaults(RunConfig& cfg) {
  OptimizerConfig& o = *cfg.mutable_optimizer();
  LOOM_CFG_DEFAULT(o, type, OptimizerConfig::ADAMW);
  // RL moves a trained policy on noisy rewards: a smaller step than pretraining's (issue 14)
  LOOM_CFG_DEFAULT(o, lr, cfg.stage() == RunConfig::PPO ? 1e-4 : 6e-4);
  LOOM_CFG_DEFAULT(o, beta1, 0.9);
  LOOM_CFG_DEFAULT(o, beta2, 0.95);
  LOOM_CFG_DEFAULT(o, eps, 1e-8);
  LOOM_CFG_DEFAULT(o, weight_decay, 0.1);
  LOOM_CFG_DEFAULT(o, momentum, 0.0);
  LOOM_CFG_DEFAULT(o, nesterov, false);
  LOOM_CFG_DEFAULT(o, grad_clip, 1.0);
  LOOM_CFG_DEFAULT(o, no_decay_bias, true);
  LOOM_CFG_DEFAULT(o, no_decay_norm, true);
  LOOM_CFG_DEFAULT(o, no_decay_embedding, false);

  LrScheduleConfig& s = *cfg.mutable_schedule();
  LOOM_CFG_DEFAULT(s, warmup_steps, 0);
  LOOM_CFG_DEFAULT(s, decay, LrScheduleConfig::COSINE);
  if (!s.has_min_lr()) LOOM_CFG_DEFAULT(s, min_lr_ratio, 0.1);
  // NB: left unset when max_steps is missing or invalid; validate() reports max_steps instead.
  if (cfg.max_steps() > 0) LOOM_CFG_DEFAULT(s, decay_steps, cfg.max_steps());
}

void io_defaults(RunConfig& cfg) {
  DataConfig& d = *cfg.mutable_data();
  LOOM_CFG_DEFAULT(d, seq_len, cfg.model().block_size());
  LOOM_CFG_DEFAULT(d, shuffle, true);

  EvalConfig& e = *cfg.mutable_eval();
  LOOM_CFG_DEFAULT(e, interval, 250);
  LOOM_CFG_DEFAULT(e, steps, 20);

  CheckpointConfig& c = *cfg.mutable_checkpoint();
  LOOM_CFG_DEFAULT(c, dir, cfg.output_dir() + "/checkpoints");
  LOOM_CFG_DEFAULT(c, interval, 1000);
  LOOM_CFG_DEFAULT(c, keep_last, 3);
  LOOM_CFG_DEFAULT(c, resume, "auto");
  LOOM_CFG_DEFAULT(c, time_interval, 0.0);

  LoggingConfig& l = *cfg.mutable_logging();
  LOOM_CFG_DEFAULT(l, interval, 10);
  LOOM_CFG_DEFAULT(l, jsonl, true);
  LOOM_CFG_DEFAULT(l, tensorboard, false);
  LOOM_CFG_DEFAULT(l, progress, LoggingConfig::AUTO);

  if (cfg.has_loss_scale()) {
    LossScaleConfig& ls = *cfg.mutable_loss_scale();
    LOOM_CFG_DEFAULT(ls, init_scale, 65536.0);
    LOOM_CFG_DEFAULT(ls, growth_factor, 2.0);
    LOOM_CFG_DEFAULT(ls, backoff_factor, 0.5);
    LOOM_CFG_DEFAULT(ls, growth_interval, 2000);
    LOOM_CFG_DEFAULT(ls, dynamic, true);
  }
}

void extract_defaults(AnswerExtractConfig& e, AnswerExtractConfig::Kind kind) {
  LOOM_CFG_DEFAULT(e, kind, kind);
  LOOM_CFG_DEFAULT(e, take_first, false);
}

void reward_source_defaults(RewardSourceConfig& r) {
  LOOM_CFG_DEFAULT(r, weight, 1.0);
  if (r.kind_case() != RewardSourceConfig::KIND_NOT_SET) {
    LOOM_CFG_DEFAULT(r, name, RewardSourceConfig::descriptor()->FindFieldByNumber(
                                  int(r.kind_case()))->name());
  }
  if (r.has_exact_match()) {
    ExactMatchRewardConfig& m = *r.mutable_exact_match();
    LOOM_CFG_DEFAULT(m, reference_field, "answer");
    extract_defaults(*m.mutable_extract(), AnswerExtractConfig::WHOLE);
    LOOM_CFG_DEFAULT(m, case_sensitive, true);
    LOOM_CFG_DEFAULT(m, correct, 1.0);
    LOOM_CFG_DEFAULT(m, incorrect, 0.0);
  } else if (r.has_regex()) {
    LOOM_CFG_DEFAULT(*r.mutable_regex(), matched, 1.0);
    LOOM_CFG_DEFAULT(*r.mutable_regex(), unmatched, 0.0);
  } else if (r.has_numeric()) {
    NumericRewardConfig& m = *r.mutable_numeric();
    LOOM_CFG_DEFAULT(m, reference_field, "answer");
    extract_defaults(*m.mutable_extract(), AnswerExtractConfig::LAST_NUMBER);
    LOOM_CFG_DEFAULT(m, tolerance, 0.0);
    LOOM_CFG_DEFAULT(m, relative, false);
    LOOM_CFG_DEFAULT(m, correct, 1.0);
    LOOM_CFG_DEFAULT(m, incorrect, 0.0);
  } else if (r.has_length_penalty()) {
    LOOM_CFG_DEFAULT(*r.mutable_length_penalty(), target, 0);
    LOOM_CFG_DEFAULT(*r.mutable_length_penalty(), count_tokens, true);
  } else if (r.has_format_penalty()) {
    LOOM_CFG_DEFAULT(*r.mutable_format_penalty(), penalty, 1.0);
  } else if (r.has_command()) {
    LOOM_CFG_DEFAULT(*r.mutable_command(), shell, false);
    LOOM_CFG_DEFAULT(*r.mutable_command(), timeout_s, 60.0);
  }
}

// NB: fields that apply to some algorithms only get defaults for those, so validate() can tell a
// field set for the wrong algorithm.
void ppo_defaults(RunConfig& cfg) {
  PpoConfig& p = *cfg.mutable_ppo();
  LOOM_CFG_DEFAULT(p, algorithm, PpoConfig::PPO);
  const bool ppo = p.algorithm() == PpoConfig::PPO, grpo = p.algorithm() == PpoConfig::GRPO;
  if (ppo) {
    LOOM_CFG_DEFAULT(p, critic_init, p.reward_model().empty() ? cfg.init_from() : p.reward_model());
    LOOM_CFG_DEFAULT(p, lam, 0.95);
    LOOM_CFG_DEFAULT(p, value_clip, 0.2);
  }
  if (ppo || p.algorithm() == PpoConfig::REINFORCE_PP) LOOM_CFG_DEFAULT(p, gamma, 1.0);
  if (grpo) {
    LOOM_CFG_DEFAULT(p, kl_estimator, PpoConfig::K3);
    LOOM_CFG_DEFAULT(p, scale_by_std, true);
  }
  LOOM_CFG_DEFAULT(p, group_size, grpo || p.algorithm() == PpoConfig::RLOO ? 4 : 1);
  LOOM_CFG_DEFAULT(p, kl_coef, 0.05);
  LOOM_CFG_DEFAULT(p, adaptive_kl, false);
  LOOM_CFG_DEFAULT(p, kl_target, 6.0);
  LOOM_CFG_DEFAULT(p, kl_horizon, 10000);
  LOOM_CFG_DEFAULT(p, clip, 0.2);
  LOOM_CFG_DEFAULT(p, clip_high, p.clip());
  LOOM_CFG_DEFAULT(p, epochs, 4);
  LOOM_CFG_DEFAULT(p, mini_batches, 1);
  LOOM_CFG_DEFAULT(p, loss_aggregation, PpoConfig::TOKEN_MEAN);
  LOOM_CFG_DEFAULT(p, truncated_responses, PpoConfig::MASK);
  LOOM_CFG_DEFAULT(p, missing_eos_penalty, 0.0);
  LOOM_CFG_DEFAULT(p, drop_equal_reward_groups, false);
  LOOM_CFG_DEFAULT(p, overlong_buffer, 0);
  LOOM_CFG_DEFAULT(p, overlong_penalty_factor, 1.0);
  LOOM_CFG_DEFAULT(p, sample_interval, 10);
  if (p.reward_size() == 0 && !p.reward_model().empty()) p.add_reward()->mutable_reward_model();
  for (RewardSourceConfig& r : *p.mutable_reward()) reward_source_defaults(r);
  RolloutConfig& r = *p.mutable_rollout();
  int64_t half_block = std::max<int64_t>(1, cfg.model().block_size() / 2);
  LOOM_CFG_DEFAULT(r, max_new_tokens, std::min<int64_t>(64, half_block));
  LOOM_CFG_DEFAULT(r, temperature, 1.0);
  LOOM_CFG_DEFAULT(r, top_k, 0);
  LOOM_CFG_DEFAULT(r, top_p, 1.0);
  LOOM_CFG_DEFAULT(r, batch_size, 32);
}

void dpo_defaults(RunConfig& cfg) {
  DpoConfig& d = *cfg.mutable_dpo();
  LOOM_CFG_DEFAULT(d, loss_type, DpoConfig::DPO);
  const bool simpo = d.loss_type() == DpoConfig::SIMPO;
  if (!simpo) LOOM_CFG_DEFAULT(d, reference, cfg.init_from());
  LOOM_CFG_DEFAULT(d, beta, simpo ? 2.0 : 0.1);
  if (d.loss_type() == DpoConfig::CDPO) LOOM_CFG_DEFAULT(d, label_smoothing, 0.1);
  if (simpo) LOOM_CFG_DEFAULT(d, simpo_gamma, 1.0);
}

void lora_defaults(RunConfig& cfg) {
  if (!cfg.has_lora()) return;
  config::LoraConfig& l = *cfg.mutable_lora();
  LOOM_CFG_DEFAULT(l, rank, 8);
  LOOM_CFG_DEFAULT(l, alpha, 16.0);
  LOOM_CFG_DEFAULT(l, dropout, 0.0);
}

void stage_defaults(RunConfig& cfg) {
  if (cfg.stage() == RunConfig::SFT) {
    SftConfig& s = *cfg.mutable_sft();
    LOOM_CFG_DEFAULT(s, template_, "plain");
    LOOM_CFG_DEFAULT(s, packing, false);
    LOOM_CFG_DEFAULT(s, mask_prompt, true);
  } else if (cfg.stage() == RunConfig::PPO) {
    ppo_defaults(cfg);
  } else if (cfg.stage() == RunConfig::DPO) {
    dpo_defaults(cfg);
  }
}

}  // namespace

void apply_defaults(RunConfig& cfg, int world_size) {
  LOOM_CFG_DEFAULT(cfg, name, "run");
  LOOM_CFG_DEFAULT(cfg, stage, RunConfig::PRETRAIN);
  LOOM_CFG_DEFAULT(cfg, seed, 1337);
  LOOM_CFG_DEFAULT(cfg, output_dir, "runs/" + cfg.name());
  LOOM_CFG_DEFAULT(cfg, device, RunConfig::CPU);
  LOOM_CFG_DEFAULT(cfg, dtype, RunConfig::F32);
  LOOM_CFG_DEFAULT(cfg, init_from, "");
  LOOM_CFG_DEFAULT(cfg, recompute, RunConfig::NONE);
  model_defaults(*cfg.mutable_model());
  parallel_and_batch_defaults(cfg, world_size);
  optimizer_defaults(cfg);
  io_defaults(cfg);
  stage_defaults(cfg);
  lora_defaults(cfg);
}

#undef LOOM_CFG_DEFAULT

int64_t grad_accum_steps(const RunConfig& cfg) {
  int64_t per_step = try_mul(cfg.batch().micro_batch_size(), cfg.parallel().dp()).value_or(0);
  int64_t global = cfg.batch().global_batch_size();
  if (per_step <= 0 || global <= 0 || global % per_step != 0) return 0;
  return global / per_step;
}

int64_t padded_vocab_size(const RunConfig& cfg) {
  int64_t pad = std::max<int64_t>(1, cfg.model().vocab_pad_multiple());
  int64_t tp = std::max<int64_t>(1, cfg.parallel().tp());
  // NB: checked, though validate() bounds every input, so a config that skipped validation
  // cannot wrap around.
  int64_t m = checked_mul(pad / std::gcd(pad, tp), tp, "config: padded vocabulary");
  int64_t blocks = checked_add(cfg.model().vocab_size(), m - 1, "config: padded vocabulary") / m;
  return checked_mul(blocks, m, "config: padded vocabulary");
}

}  // namespace loom::config

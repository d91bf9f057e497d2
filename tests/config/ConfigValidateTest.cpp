// Config validation table (TESTPLAN U7): each invalid config throws ConfigError whose message names
// every offending field with its value; all problems are reported at once; valid configs (including
// the examples in configs/) pass; derived quantities (dp, grad accumulation, padded vocab) are
// right.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/util/Check.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "config/ConfigOverride.h"
#include "config/ConfigValidate.h"

namespace loom::config {
namespace {

// The tiny test-plan model; every table case starts from it.
constexpr const char* kTiny = R"pb(
  max_steps: 200
  model { n_layer: 4 n_head: 4 n_embd: 64 vocab_size: 256 block_size: 32 }
  data { train_path: "train.h5" seq_len: 32 }
  optimizer { lr: 1e-3 }
  schedule { warmup_steps: 20 }
  batch { micro_batch_size: 8 }
)pb";

struct InvalidCase {
  const char* name;
  int world;
  std::vector<std::string> sets;      // --set overrides applied to kTiny
  std::vector<std::string> expected;  // substrings the ConfigError message must contain
};

const std::vector<InvalidCase>& invalid_cases() {
  static const std::vector<InvalidCase> cases = {
      {"world_mismatch",
       1,
       {"parallel.dp=2"},
       {"parallel.tp=1", "parallel.pp=1", "parallel.dp=2", "world size 1"}},
      {"tp_pp_not_dividing_world", 4, {"parallel.tp=3"}, {"parallel.tp=3", "world size 4"}},
      // The mutation check found this bound untested (issue 15).
      {"tp_zero", 1, {"parallel.tp=0"}, {"parallel.tp=0: expected >= 1"}},
      {"pp_zero", 1, {"parallel.pp=0"}, {"parallel.pp=0: expected >= 1"}},
      {"heads_not_divisible_by_tp", 8, {"parallel.tp=8"}, {"model.n_head=4", "parallel.tp=8"}},
      {"layers_not_divisible_by_pp",
       3,
       {"parallel.pp=3", "batch.global_batch_size=24"},
       {"model.n_layer=4", "parallel.pp=3"}},
      {"embd_not_divisible_by_heads",
       1,
       {"model.n_embd=66"},
       {"model.n_embd=66", "model.n_head=4"}},
      {"zero_layers", 1, {"model.n_layer=0"}, {"model.n_layer=0"}},
      {"zero_heads", 1, {"model.n_head=0"}, {"model.n_head=0"}},
      {"zero_vocab", 1, {"model.vocab_size=0"}, {"model.vocab_size=0"}},
      {"zero_vocab_pad", 1, {"model.vocab_pad_multiple=0"}, {"model.vocab_pad_multiple=0"}},
      {"negative_block_size",
       1,
       {"model.block_size=-1"},
       {"model.block_size=-1", "data.seq_len=32"}},
      {"kv_heads_not_dividing_heads",
       1,
       {"model.n_kv_head=3"},
       {"model.n_kv_head=3", "model.n_head=4"}},
      {"kv_heads_neither_multiple_nor_divisor_of_tp",
       4,
       {"model.n_head=12", "model.n_embd=48", "model.n_kv_head=6", "parallel.tp=4"},
       {"model.n_kv_head=6", "parallel.tp=4", "replicated"}},
      {"mlp_width_not_divisible_by_tp",
       2,
       {"parallel.tp=2", "model.intermediate_size=255"},
       {"model.intermediate_size=255", "parallel.tp=2"}},
      {"rope_with_odd_head_size",
       1,
       {"model.position=rope", "model.n_embd=36"},
       {"model.n_embd=36", "model.n_head=4", "even head size"}},
      {"rope_theta_zero", 1, {"model.position=rope", "model.rope_theta=0"}, {"model.rope_theta=0"}},
      {"llama3_high_freq_below_low",
       1,
       {"model.position=rope", "model.rope_scaling.type=llama3",
        "model.rope_scaling.high_freq_factor=0.5"},
       {"model.rope_scaling.high_freq_factor=0.5", "model.rope_scaling.low_freq_factor=1"}},
      {"norm_eps_negative", 1, {"model.norm_eps=-1"}, {"model.norm_eps=-1"}},
      {"dropout_one", 1, {"model.dropout=1.0"}, {"model.dropout=1"}},
      {"dropout_negative", 1, {"model.dropout=-0.1"}, {"model.dropout=-0.1"}},
      {"init_std_zero", 1, {"model.init_std=0"}, {"model.init_std=0"}},
      {"unknown_preset",
       1,
       {"model.preset=gpt3-175b"},
       {"model.preset=\"gpt3-175b\"", "gpt2-124m"}},
      {"global_not_multiple",
       1,
       {"batch.global_batch_size=12"},
       {"batch.global_batch_size=12", "batch.micro_batch_size=8", "parallel.dp=1"}},
      {"global_below_one_step",
       2,
       {"batch.global_batch_size=8", "parallel.dp=2"},
       {"batch.global_batch_size=8", "parallel.dp=2"}},
      {"global_batch_zero", 1, {"batch.global_batch_size=0"}, {"batch.global_batch_size=0"}},
      {"micro_batch_zero", 1, {"batch.micro_batch_size=0"}, {"batch.micro_batch_size=0"}},
      {"one_f_one_b_too_few_micro_batches",
       2,
       {"parallel.pp=2"},
       {"parallel.micro_batches=1", "parallel.pp=2"}},
      {"micro_batches_disagree",
       1,
       {"parallel.micro_batches=3"},
       {"parallel.micro_batches=3", "batch.global_batch_size=8"}},
      {"zero_stage_two", 1, {"parallel.zero_stage=2"}, {"parallel.zero_stage=2"}},
      {"seq_len_over_block", 1, {"data.seq_len=64"}, {"data.seq_len=64", "model.block_size=32"}},
      {"lr_zero", 1, {"optimizer.lr=0"}, {"optimizer.lr=0"}},
      {"lr_negative", 1, {"optimizer.lr=-0.001"}, {"optimizer.lr=-0.001"}},
      {"beta1_one", 1, {"optimizer.beta1=1"}, {"optimizer.beta1=1"}},
      {"beta2_negative", 1, {"optimizer.beta2=-0.5"}, {"optimizer.beta2=-0.5"}},
      {"eps_zero", 1, {"optimizer.eps=0"}, {"optimizer.eps=0"}},
      {"weight_decay_negative", 1, {"optimizer.weight_decay=-1"}, {"optimizer.weight_decay=-1"}},
      {"grad_clip_negative", 1, {"optimizer.grad_clip=-2"}, {"optimizer.grad_clip=-2"}},
      {"momentum_too_big",
       1,
       {"optimizer.type=sgd", "optimizer.momentum=1.5"},
       {"optimizer.momentum=1.5"}},
      {"nesterov_with_adamw",
       1,
       {"optimizer.nesterov=true"},
       {"optimizer.nesterov=true", "optimizer.momentum=0"}},
      {"max_steps_zero", 1, {"max_steps=0"}, {"max_steps=0"}},
      {"max_steps_negative", 1, {"max_steps=-5"}, {"max_steps=-5"}},
      {"warmup_longer_than_run",
       1,
       {"schedule.warmup_steps=500"},
       {"schedule.warmup_steps=500", "max_steps=200"}},
      {"warmup_negative", 1, {"schedule.warmup_steps=-1"}, {"schedule.warmup_steps=-1"}},
      {"both_min_lr_forms",
       1,
       {"schedule.min_lr=1e-5", "schedule.min_lr_ratio=0.1"},
       {"schedule.min_lr=1e-05", "schedule.min_lr_ratio=0.1"}},
      {"min_lr_above_lr",
       1,
       {"schedule.min_lr=0.5"},
       {"schedule.min_lr=0.5", "optimizer.lr=0.001"}},
      {"decay_steps_zero", 1, {"schedule.decay_steps=0"}, {"schedule.decay_steps=0"}},
      {"eval_interval_negative", 1, {"eval.interval=-1"}, {"eval.interval=-1"}},
      {"checkpoint_interval_negative", 1, {"checkpoint.interval=-5"}, {"checkpoint.interval=-5"}},
      {"keep_last_negative", 1, {"checkpoint.keep_last=-1"}, {"checkpoint.keep_last=-1"}},
      {"logging_interval_negative", 1, {"logging.interval=-10"}, {"logging.interval=-10"}},
      {"resume_empty", 1, {"checkpoint.resume="}, {"checkpoint.resume=\"\""}},
      {"f16_without_loss_scale", 1, {"dtype=f16"}, {"dtype=F16", "loss_scale"}},
      {"loss_scale_growth_one",
       1,
       {"dtype=f16", "loss_scale.growth_factor=1"},
       {"loss_scale.growth_factor=1"}},
      {"loss_scale_backoff_one",
       1,
       {"dtype=bf16", "loss_scale.backoff_factor=1"},
       {"loss_scale.backoff_factor=1"}},
      {"pretrain_without_data", 1, {"data.train_path="}, {"data.train_path=\"\"", "PRETRAIN"}},
      {"vocab_without_merges",
       1,
       {"data.tokenizer_vocab=vocab.json"},
       {"data.tokenizer_vocab=\"vocab.json\"", "data.tokenizer_merges=\"\""}},
      {"tokenizer_json_and_vocab",
       1,
       {"data.tokenizer_json=t.json", "data.tokenizer_vocab=v.json", "data.tokenizer_merges=m.txt"},
       {"data.tokenizer_json=\"t.json\"", "data.tokenizer_vocab=\"v.json\""}},
      {"hf_without_dir", 1, {"init_from=hf:"}, {"init_from=\"hf:\""}},
      {"sft_without_dataset", 1, {"stage=sft"}, {"sft.train_path=\"\"", "SFT"}},
      {"reward_without_dataset", 1, {"stage=reward"}, {"reward.train_path=\"\"", "REWARD"}},
      {"ppo_without_inputs",
       1,
       {"stage=ppo"},
       {"ppo.prompts_path=\"\"", "ppo.reward_model=\"\"", "init_from=\"\""}},
      {"ppo_gamma_above_one",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.gamma=1.5"},
       {"ppo.gamma=1.5"}},
      {"ppo_top_p_zero",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm",
        "ppo.rollout.top_p=0"},
       {"ppo.rollout.top_p=0"}},
      {"ppo_rollout_longer_than_block",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm",
        "ppo.rollout.max_new_tokens=32"},
       {"ppo.rollout.max_new_tokens=32", "model.block_size=32"}},
      {"ppo_adaptive_kl_horizon_negative",  // the controller would divide by it (drills)
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm",
        "ppo.adaptive_kl=true", "ppo.kl_horizon=-1"},
       {"ppo.kl_horizon=-1: expected >= 1 with ppo.adaptive_kl=true"}},
      {"dpo_beta_zero",
       1,
       {"stage=dpo", "init_from=sft", "dpo.train_path=pairs", "dpo.beta=0"},
       {"dpo.beta=0"}},
      {"dpo_without_reference", 1, {"stage=dpo", "dpo.train_path=pairs"}, {"dpo.reference=\"\""}},
      {"grpo_group_of_one",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.algorithm=grpo", "ppo.group_size=1"},
       {"ppo.group_size=1: expected >= 2 samples per prompt for ppo.algorithm=GRPO"}},
      {"grpo_with_ppo_fields",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.algorithm=grpo", "ppo.lam=0.9", "ppo.critic_init=c"},
       {"ppo.lam is set: expected it only with ppo.algorithm=PPO, got ppo.algorithm=GRPO",
        "ppo.critic_init is set"}},
      {"ppo_with_grpo_fields",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.kl_estimator=k2", "ppo.scale_by_std=false"},
       {"ppo.kl_estimator is set: expected it only with ppo.algorithm=GRPO",
        "ppo.scale_by_std is set"}},
      {"rl_mini_batches_not_dividing_the_samples",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.algorithm=rloo", "ppo.group_size=3", "ppo.rollout.batch_size=2", "ppo.mini_batches=4"},
       {"ppo.mini_batches=4: expected a divisor of ppo.rollout.batch_size * ppo.group_size = 6"}},
      {"missing_eos_penalty_on_masked_responses",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.missing_eos_penalty=5"},
       {"ppo.missing_eos_penalty=5: expected ppo.truncated_responses=KEEP"}},
      {"overlong_buffer_beyond_the_limit",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.overlong_buffer=20", "ppo.rollout.max_new_tokens=8"},
       {"ppo.overlong_buffer=20: expected a value in [0, ppo.rollout.max_new_tokens=8]"}},
      {"drop_equal_groups_without_groups",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.drop_equal_reward_groups=true"},
       {"ppo.drop_equal_reward_groups=true: expected ppo.group_size >= 2"}},
      {"clip_of_one",
       1,
       {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm", "ppo.clip=1", "ppo.clip_high=0"},
       {"ppo.clip=1: expected (0, 1)", "ppo.clip_high=0: expected > 0"}},
      {"simpo_with_a_reference",
       1,
       {"stage=dpo", "dpo.train_path=pairs", "dpo.loss_type=simpo", "dpo.reference=r"},
       {"dpo.reference=\"r\": expected it unset with dpo.loss_type=SIMPO"}},
      {"cdpo_smoothing_of_one_half",
       1,
       {"stage=dpo", "init_from=sft", "dpo.train_path=pairs", "dpo.loss_type=cdpo",
        "dpo.label_smoothing=0.5"},
       {"dpo.label_smoothing=0.5: expected a value in [0, 0.5)"}},
      {"dpo_variant_fields_for_another_loss",
       1,
       {"stage=dpo", "init_from=sft", "dpo.train_path=pairs", "dpo.label_smoothing=0.1",
        "dpo.simpo_gamma=1"},
       {"dpo.label_smoothing is set: expected it only with dpo.loss_type=CDPO",
        "dpo.simpo_gamma is set: expected it only with dpo.loss_type=SIMPO"}},
      {"lora_out_of_range",
       1,
       {"stage=sft", "sft.train_path=s", "init_from=ckpt", "lora.rank=0", "lora.alpha=0",
        "lora.dropout=1"},
       {"lora.rank=0: expected >= 1", "lora.alpha=0: expected > 0",
        "lora.dropout=1: expected a value in [0, 1)", "lora.target_modules is empty"}},
      {"lora_without_base_or_in_pretraining",
       1,
       {"lora.rank=4"},
       {"stage=PRETRAIN: expected stage SFT, DPO or PPO", "init_from=\"\""}},
  };
  return cases;
}

TEST(ConfigValidateTest, TinyBaseIsValid) {
  RunConfig cfg = parse_text(kTiny, "tiny");
  EXPECT_NO_THROW(validate(cfg, 1));
  EXPECT_TRUE(find_problems(cfg, 4).empty()) << "dp is derived as 4 on 4 ranks";
}

TEST(ConfigValidateTest, ValidVariantsPass) {
  struct Valid {
    int world;
    std::vector<std::string> sets;
  };
  const std::vector<Valid> valid = {
      {1, {"device=cuda"}},  // CUDA with F32 is allowed
      {1, {"device=cuda", "dtype=bf16"}},
      {1, {"dtype=f16", "loss_scale.init_scale=1024"}},
      {2, {"parallel.pp=2", "parallel.schedule=gpipe"}},  // GPipe accepts one micro-batch
      {8,
       {"parallel.tp=2", "parallel.pp=2", "batch.global_batch_size=32"}},  // dp 2, 2 micro-batches
      {4, {"parallel.dp=4", "parallel.zero_stage=1", "parallel.ordered_reduce=true"}},
      {1, {"optimizer.type=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true"}},
      {1, {"schedule.min_lr=1e-5", "schedule.decay=constant"}},
      {1, {"stage=sft", "sft.train_path=sft.jsonl", "init_from=ckpt"}},
      {1, {"stage=reward", "reward.train_path=pairs.jsonl"}},
      {1, {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm"}},
      {1, {"stage=dpo", "init_from=sft", "dpo.train_path=pairs.jsonl"}},
      {1, {"stage=dpo", "dpo.train_path=pairs.jsonl", "dpo.loss_type=simpo"}},
      {1, {"stage=dpo", "init_from=sft", "dpo.train_path=p", "dpo.loss_type=cdpo",
           "dpo.val_path=v"}},
      {1, {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm",
           "ppo.algorithm=grpo", "ppo.group_size=8", "ppo.clip_high=0.28",
           "ppo.loss_aggregation=seq_mean_token_sum_norm", "ppo.scale_by_std=false",
           "ppo.drop_equal_reward_groups=true", "ppo.overlong_buffer=4",
           "ppo.kl_estimator=k1", "ppo.rollout.batch_size=2"}},
      {1, {"stage=ppo", "init_from=sft", "ppo.prompts_path=p", "ppo.reward_model=rm",
           "ppo.algorithm=reinforce_pp", "ppo.gamma=0.99", "ppo.truncated_responses=keep",
           "ppo.missing_eos_penalty=2"}},
      {1, {"init_from=hf:/models/gpt2", "model.preset=gpt2-124m", "model.block_size=32"}},
      // Llama architecture with MQA under TP 4 (the kv head replicated) and llama3 scaling.
      {4,
       {"model.norm=rms_norm", "model.position=rope", "model.mlp=swiglu", "model.n_kv_head=1",
        "model.rope_scaling.type=llama3", "parallel.tp=4"}},
      {1, {"model.preset=qwen2.5-0.5b", "model.block_size=32"}},
  };
  for (const Valid& v : valid) {
    RunConfig cfg = parse_text(kTiny, "tiny");
    apply_overrides(cfg, v.sets);
    std::vector<std::string> problems = find_problems(cfg, v.world);
    EXPECT_TRUE(problems.empty()) << v.sets.front() << ": " << problems.front();
  }
}

TEST(ConfigValidateTest, LoraTargetsAreLayerNamesAndDefaultsFillTheRest) {
  RunConfig ok = parse_text(std::string(kTiny) + "stage: SFT sft { train_path: \"s\" } "
                            "init_from: \"ckpt\" lora { target_modules: [\"qkv\", \"mlp.proj\"] }",
                            "tiny");
  EXPECT_TRUE(find_problems(ok, 1).empty()) << find_problems(ok, 1).front();
  apply_defaults(ok, 1);
  EXPECT_EQ(ok.lora().rank(), 8);
  EXPECT_EQ(ok.lora().alpha(), 16.0);
  EXPECT_EQ(ok.lora().dropout(), 0.0);
  RunConfig bad = parse_text(std::string(kTiny) + "stage: SFT sft { train_path: \"s\" } "
                             "init_from: \"ckpt\" lora { target_modules: [\"fc\", \"q_proj\"] }",
                             "tiny");
  std::vector<std::string> problems = find_problems(bad, 1);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("lora.target_modules[1]=\"q_proj\""), std::string::npos)
      << problems[0];
}

TEST(ConfigValidateTest, ResolveAppliesOverridesBeforeDefaultsAndValidates) {
  const std::string tiny = std::string(LOOM_SOURCE_DIR) + "/configs/tiny.pbtxt";
  RunConfig cfg = resolve(tiny, {"optimizer.lr=0.002", "max_steps=50"}, 1);
  EXPECT_EQ(cfg.optimizer().lr(), 0.002);
  EXPECT_EQ(cfg.schedule().decay_steps(), 50);  // the default follows the overridden max_steps
  EXPECT_THROW(resolve(tiny, {"model.n_head=5"}, 1), ConfigError);
  EXPECT_THROW(resolve(tiny, {"model.n_heads=4"}, 1), ConfigError);
}

TEST(ConfigValidateTest, EveryInvalidConfigNamesEachOffendingFieldAndValue) {
  ASSERT_GE(invalid_cases().size(), 30u);  // TESTPLAN U7 asks for at least 30
  for (const InvalidCase& c : invalid_cases()) {
    SCOPED_TRACE(c.name);
    RunConfig cfg = parse_text(kTiny, "tiny");
    apply_overrides(cfg, c.sets);
    try {
      validate(cfg, c.world);
      ADD_FAILURE() << c.name << ": expected ConfigError, validate() passed";
    } catch (const ConfigError& e) {
      std::string msg = e.what();
      for (const std::string& want : c.expected)
        EXPECT_NE(msg.find(want), std::string::npos) << "missing \"" << want << "\" in:\n" << msg;
    }
  }
}

TEST(ConfigValidateTest, AllProblemsAreReportedTogether) {
  RunConfig cfg = parse_text(kTiny, "tiny");
  apply_overrides(cfg, {"optimizer.lr=-1", "model.n_head=3", "parallel.tp=2", "model.dropout=2"});
  try {
    validate(cfg, 2);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    for (const char* want : {"optimizer.lr=-1", "model.n_head=3", "parallel.tp=2",
                             "model.dropout=2", "model.n_embd=64", "world size 2"})
      EXPECT_NE(msg.find(want), std::string::npos) << "missing \"" << want << "\" in:\n" << msg;
  }
  // n_head%tp, n_embd%n_head, lr, dropout: four independent problems, one line each.
  EXPECT_EQ(find_problems(cfg, 2).size(), 4u);
}

TEST(ConfigValidateTest, MissingMaxStepsIsReportedAsUnset) {
  RunConfig cfg = parse_text(R"pb(data { train_path: "t.h5" })pb");
  std::vector<std::string> problems = find_problems(cfg, 1);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("max_steps=unset"), std::string::npos) << problems[0];
}

TEST(ConfigValidateTest, ExampleConfigsResolve) {
  const std::string dir = std::string(LOOM_SOURCE_DIR) + "/configs/";
  RunConfig tiny = resolve(dir + "tiny.pbtxt", {}, 1);
  EXPECT_EQ(tiny.model().n_layer(), 4);
  EXPECT_EQ(tiny.model().n_embd(), 64);
  EXPECT_EQ(tiny.model().n_head(), 4);
  EXPECT_EQ(tiny.model().vocab_size(), 256);
  EXPECT_EQ(tiny.data().seq_len(), 32);
  EXPECT_EQ(tiny.parallel().dp(), 1);
  EXPECT_EQ(grad_accum_steps(tiny), 1);

  for (int world : {1, 2, 4, 8}) {
    SCOPED_TRACE(world);
    RunConfig g = resolve(dir + "gpt2-124m.pbtxt", {}, world);
    EXPECT_EQ(g.model().n_layer(), 12);
    EXPECT_EQ(g.model().n_embd(), 768);
    EXPECT_EQ(g.parallel().dp(), world);
    EXPECT_EQ(grad_accum_steps(g), 512 / (16 * world));
    EXPECT_EQ(g.parallel().micro_batches(), 512 / (16 * world));
    EXPECT_EQ(padded_vocab_size(g), 50304);  // 50257 rounded up to a multiple of 128
  }
}

TEST(ConfigValidateTest, PresetFillsModelAndExplicitFieldsWin) {
  RunConfig cfg = parse_text(R"pb(model { preset: "gpt2-350m" n_layer: 6 })pb");
  apply_defaults(cfg, 1);
  EXPECT_EQ(cfg.model().n_layer(), 6);  // explicit beats preset
  EXPECT_EQ(cfg.model().n_head(), 16);
  EXPECT_EQ(cfg.model().n_embd(), 1024);
  EXPECT_EQ(cfg.model().vocab_size(), 50257);
  EXPECT_EQ(cfg.data().seq_len(), 1024);  // defaults to block_size
}

TEST(ConfigValidateTest, LlamaFamilyPresetsFillTheArchitecture) {
  RunConfig cfg = parse_text(R"pb(model { preset: "llama-3.2-1b" })pb");
  apply_defaults(cfg, 1);
  const ModelConfig& m = cfg.model();
  EXPECT_EQ(m.norm(), ModelConfig::RMS_NORM);
  EXPECT_EQ(m.norm_eps(), 1e-5);
  EXPECT_EQ(m.position(), ModelConfig::ROPE);
  EXPECT_EQ(m.rope_theta(), 500000.0);
  EXPECT_EQ(m.rope_scaling().type(), RopeScaling::LLAMA3);
  EXPECT_EQ(m.rope_scaling().factor(), 32.0);
  EXPECT_EQ(m.rope_scaling().original_max_positions(), 8192);
  EXPECT_EQ(m.mlp(), ModelConfig::SWIGLU);
  EXPECT_EQ(m.intermediate_size(), 8192);
  EXPECT_EQ(m.n_kv_head(), 8);
  EXPECT_FALSE(m.bias());
  EXPECT_FALSE(m.qkv_bias());
  EXPECT_TRUE(m.tie_embeddings());
  RunConfig qwen = parse_text(R"pb(model { preset: "qwen2.5-7b" })pb");
  apply_defaults(qwen, 1);
  EXPECT_TRUE(qwen.model().qkv_bias());  // Qwen2: q/k/v biases apart from the others
  EXPECT_FALSE(qwen.model().bias());
  EXPECT_FALSE(qwen.model().tie_embeddings());
}

TEST(ConfigValidateTest, ArchitectureDefaultsKeepGpt2) {
  RunConfig cfg = parse_text(kTiny);
  apply_override(cfg, "model.bias=false");
  apply_defaults(cfg, 1);
  const ModelConfig& m = cfg.model();
  EXPECT_EQ(m.norm(), ModelConfig::LAYER_NORM);
  EXPECT_EQ(m.norm_eps(), 1e-5);
  EXPECT_EQ(m.position(), ModelConfig::LEARNED);
  EXPECT_EQ(m.rope_scaling().type(), RopeScaling::NONE);
  EXPECT_EQ(m.mlp(), ModelConfig::GELU);
  EXPECT_EQ(m.intermediate_size(), 4 * 64);
  EXPECT_EQ(m.n_kv_head(), 4);
  EXPECT_FALSE(m.qkv_bias());  // follows bias: GPT-2 without biases has none on q/k/v either
}

TEST(ConfigValidateTest, VocabIsPaddedToMultipleOfTensorParallelSize) {
  RunConfig cfg = parse_text(kTiny);
  apply_overrides(cfg, {"model.vocab_size=257", "parallel.tp=4"});
  apply_defaults(cfg, 4);
  EXPECT_EQ(padded_vocab_size(cfg), 260);
  apply_override(cfg, "model.vocab_pad_multiple=6");
  EXPECT_EQ(padded_vocab_size(cfg), 264);  // lcm(6, 4) = 12
  EXPECT_NO_THROW(validate(cfg, 4));
}

TEST(ConfigValidateTest, DefaultsAreIdempotentAndTextRoundTrips) {
  RunConfig cfg = parse_text(kTiny);
  apply_defaults(cfg, 2);
  RunConfig again = cfg;
  apply_defaults(again, 2);
  EXPECT_EQ(to_text(again), to_text(cfg));
  RunConfig back = parse_text(to_text(cfg), "resolved");
  EXPECT_EQ(to_text(back), to_text(cfg));
  EXPECT_EQ(config_hash(back), config_hash(cfg));
  EXPECT_EQ(config_hash(cfg).size(), 16u);
}

TEST(ConfigValidateTest, HashChangesWithAnyField) {
  RunConfig a = parse_text(kTiny);
  apply_defaults(a, 1);
  RunConfig b = a;
  apply_override(b, "optimizer.lr=0.0011");
  EXPECT_NE(config_hash(a), config_hash(b));
  RunConfig c = a;
  apply_override(c, "seed=1338");
  EXPECT_NE(config_hash(a), config_hash(c));
}

// An RL config with reward sources (repeated fields cannot be --set).
RunConfig rl_config(const std::string& ppo) {
  return parse_text(std::string(kTiny) +
                    "stage: PPO init_from: \"sft\" ppo { prompts_path: \"p\" " + ppo + " }");
}

std::string all_problems(const RunConfig& cfg) {
  std::string out;
  for (const std::string& p : find_problems(cfg, 1)) out += p + "\n";
  return out;
}

TEST(ConfigValidateTest, EachRewardSourceIsCheckedUnderItsIndex) {
  const std::string msg = all_problems(rl_config(
      "algorithm: GRPO reward { weight: 2 } reward { regex {} } "
      "reward { exact_match { extract { kind: REGEX } } } reward { exact_match {} } "
      "reward { command { timeout_s: 0 } } reward { length_penalty { target: -1 } }"));
  for (const char* want :
       {"ppo.reward[0]: expected one of reward_model, exact_match, regex",
        "ppo.reward[1].regex.pattern=\"\": expected a pattern",
        "ppo.reward[2].exact_match.extract.regex=\"\": expected a pattern for "
        "ppo.reward[2].exact_match.extract.kind=REGEX",
        "ppo.reward[3].name=\"exact_match\": expected a non-empty name unique in ppo.reward "
        "(ppo.reward[2] has it)",
        "ppo.reward[4].command.argv: expected the checker program",
        "ppo.reward[4].command.timeout_s=0: expected > 0 seconds",
        "ppo.reward[5].length_penalty.target=-1: expected >= 0",
        "ppo.reward[5].length_penalty.per_unit=0: expected > 0"}) {
    EXPECT_NE(msg.find(want), std::string::npos) << "missing \"" << want << "\" in:\n" << msg;
  }
  // Schema checks reach into repeated fields.
  EXPECT_NE(all_problems(rl_config("reward_model: \"rm\" reward { reward_model {} weight: inf }"))
                .find("ppo.reward[0].weight=inf: expected a finite number"),
            std::string::npos);
  // A reward model source needs the checkpoint; a checkpoint needs a source that uses it.
  EXPECT_NE(all_problems(rl_config("reward { reward_model {} }"))
                .find("ppo.reward_model=\"\": expected a reward model checkpoint for the "
                      "reward_model source ppo.reward[0]"),
            std::string::npos);
  EXPECT_NE(all_problems(rl_config("reward_model: \"rm\" reward { regex { pattern: \"x\" } }"))
                .find("ppo.reward_model=\"rm\": expected a reward_model {} source in ppo.reward"),
            std::string::npos);
  EXPECT_EQ(all_problems(rl_config(
                "algorithm: GRPO reward { exact_match {} } reward { name: \"fmt\" weight: 0.5 "
                "format_penalty { pattern: \"^\\\\d+$\" } } reward { command { argv: \"./check\" } }")),
            "");
}

TEST(ConfigValidateTest, RlDefaultsDependOnTheAlgorithm) {
  RunConfig ppo = rl_config("reward_model: \"rm\"");
  apply_defaults(ppo, 1);
  const PpoConfig& p = ppo.ppo();
  ASSERT_EQ(p.reward_size(), 1);  // the reward model, weight 1
  EXPECT_TRUE(p.reward(0).has_reward_model());
  EXPECT_EQ(p.reward(0).name(), "reward_model");
  EXPECT_EQ(p.reward(0).weight(), 1.0);
  EXPECT_EQ(p.critic_init(), "rm");
  EXPECT_EQ(p.group_size(), 1);
  EXPECT_EQ(p.truncated_responses(), PpoConfig::MASK);  // safe default: cut responses never pay
  EXPECT_EQ(p.clip_high(), p.clip());
  EXPECT_FALSE(p.has_kl_estimator());
  RunConfig rules = rl_config("reward { exact_match {} }");
  apply_defaults(rules, 1);
  EXPECT_EQ(rules.ppo().critic_init(), "sft");  // no reward model: a fresh head on init_from
  EXPECT_EQ(rules.ppo().reward(0).exact_match().reference_field(), "answer");
  EXPECT_EQ(rules.ppo().reward(0).exact_match().extract().kind(), AnswerExtractConfig::WHOLE);
  RunConfig grpo = rl_config("algorithm: GRPO clip: 0.1 reward { numeric {} }");
  apply_defaults(grpo, 1);
  const PpoConfig& g = grpo.ppo();
  EXPECT_EQ(g.group_size(), 4);
  EXPECT_EQ(g.kl_estimator(), PpoConfig::K3);
  EXPECT_TRUE(g.scale_by_std());
  EXPECT_EQ(g.clip_high(), 0.1);
  EXPECT_EQ(g.reward(0).numeric().extract().kind(), AnswerExtractConfig::LAST_NUMBER);
  EXPECT_FALSE(g.has_lam() || g.has_critic_init() || g.has_value_clip() || g.has_gamma());
  RunConfig simpo = parse_text(std::string(kTiny) +
                               "stage: DPO dpo { train_path: \"p\" loss_type: SIMPO }");
  apply_defaults(simpo, 1);
  EXPECT_EQ(simpo.dpo().beta(), 2.0);
  EXPECT_EQ(simpo.dpo().simpo_gamma(), 1.0);
  EXPECT_FALSE(simpo.dpo().has_reference());
}

}  // namespace
}  // namespace loom::config

// MemoryPlanTest: the structure of `loom plan`'s per-rank memory estimate on GPT-2 124M (CPU,
// f32): each persistent part is the byte count of what the rank owns (parameters from the model
// shape, AdamW's two moments, ZeRO-1's shard), activations shrink with recompute and tensor
// parallelism, pipeline stages hold the micro-batches their schedule keeps in flight, and the
// peak is never below the persistent state. How close the plan is to a measured peak is checked
// by bench/bench_memory (docs/PERFORMANCE.md), not here.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "config/ConfigLoader.h"
#include "models/GPT.h"
#include "parallel/comm/FakeCommunicator.h"
#include "train/MemoryPlan.h"
#include "train/Trainer.h"

namespace loom::train {
namespace {

constexpr double kMiB = double(1 << 20);

config::RunConfig gpt2_small(std::vector<std::string> overrides, int world = 1) {
  const std::vector<std::string> base = {"device=CPU", "dtype=F32", "batch.micro_batch_size=8",
                                         "data.seq_len=256", "parallel.zero_stage=0"};
  overrides.insert(overrides.begin(), base.begin(), base.end());
  if (overrides.end() == std::find(overrides.begin(), overrides.end(), "keep-global")) {
    overrides.push_back("batch.global_batch_size=" + std::to_string(8 * world));
  } else {
    overrides.erase(std::find(overrides.begin(), overrides.end(), "keep-global"));
  }
  return config::resolve(std::string(LOOM_SOURCE_DIR) + "/configs/gpt2-124m.pbtxt", overrides,
                         world);
}

TEST(MemoryPlan, OneProcessCountsF32ParametersGradientsAndTwoAdamWMoments) {
  const config::RunConfig cfg = gpt2_small({});
  const std::vector<RankMemory> plan = plan_memory(cfg);
  ASSERT_EQ(plan.size(), 1u);
  const double P = double(models::GPT::local_parameters(gpt_config_from(cfg), 1, 0, 1)) * 4.0;
  EXPECT_DOUBLE_EQ(plan[0].params, P / kMiB);
  EXPECT_DOUBLE_EQ(plan[0].grads, P / kMiB);
  EXPECT_DOUBLE_EQ(plan[0].optimizer, 2.0 * P / kMiB);
  EXPECT_EQ(plan[0].micro_batches_held, 1);
  EXPECT_GE(plan[0].peak, plan[0].params + plan[0].grads + plan[0].optimizer + plan[0].process);
}

// The adapter count the plan uses equals what GPT::add_lora allocates on each TP rank: GPT-2's
// fused qkv, grouped-query kv split over TP, and one kv head replicated (tp > n_kv_head).
TEST(MemoryPlan, LoraCountIsTheAdaptersEachRankHolds) {
  for (int64_t kv : {0, 2, 1}) {
    models::GPTConfig c;
    c.n_layer = 3;
    c.n_head = 4;
    c.n_kv_head = kv;
    c.n_embd = 32;
    c.vocab_size = 64;
    c.block_size = 8;
    c.mlp = kv == 0 ? models::MlpKind::Gelu : models::MlpKind::SwiGLU;
    const std::vector<std::string> targets =
        kv == 0 ? std::vector<std::string>{"attn.qkv", "proj", "fc"}
                : std::vector<std::string>{"q", "kv", "attn.proj", "mlp.fc", "mlp.proj"};
    const tp::LoraOptions o{4, 8.0, 0.0, 0.02};
    for (int tp : {1, 2}) {
      run_fake_ranks(tp, [&](Communicator& comm) {
        models::GPT m(c, {&comm, nullptr});
        m.add_lora(o, targets, 1);
        int64_t n = 0;
        for (const nn::Parameter& p : m.trainable_parameter_list()) n += p.tensor.numel();
        EXPECT_EQ(models::GPT::local_lora_parameters(c, targets, 4, tp, 0, 1), n)
            << "n_kv_head " << kv << " tp " << tp;
      });
    }
  }
}

TEST(MemoryPlan, LoraHasGradientsAndOptimizerStateOfTheAdaptersOnly) {
  config::RunConfig cfg = gpt2_small({"stage=SFT", "sft.train_path=s.jsonl", "init_from=ckpt"});
  cfg.mutable_lora()->set_rank(8);
  cfg.mutable_lora()->set_alpha(16.0);
  cfg.mutable_lora()->set_dropout(0.0);
  cfg.mutable_lora()->add_target_modules("qkv");
  cfg.mutable_lora()->add_target_modules("proj");
  const std::vector<RankMemory> plan = plan_memory(cfg);
  ASSERT_EQ(plan.size(), 1u);
  const models::GPTConfig g = gpt_config_from(cfg);
  const double P = double(models::GPT::local_parameters(g, 1, 0, 1)) * 4.0;
  const double A = double(models::GPT::local_lora_parameters(g, {"qkv", "proj"}, 8, 1, 0, 1)) * 4.0;
  EXPECT_GT(A, 0.0);
  EXPECT_DOUBLE_EQ(plan[0].params, (P + A) / kMiB);
  EXPECT_DOUBLE_EQ(plan[0].grads, A / kMiB);
  EXPECT_DOUBLE_EQ(plan[0].optimizer, 2.0 * A / kMiB);
}

TEST(MemoryPlan, RecomputeOrdersActivationsFullBelowSelectiveBelowNone) {
  const RankMemory none = plan_memory(gpt2_small({"recompute=NONE"}))[0];
  const RankMemory selective = plan_memory(gpt2_small({"recompute=SELECTIVE"}))[0];
  const RankMemory full = plan_memory(gpt2_small({"recompute=FULL"}))[0];
  EXPECT_LT(full.activations, selective.activations);
  EXPECT_LT(selective.activations, none.activations);
  EXPECT_LT(full.peak, none.peak);
  // FULL keeps one (b, T, C) f32 input per block: 12 blocks of 8 x 256 x 768 (ln_f's input and
  // output on top, 2 more of the same size).
  EXPECT_DOUBLE_EQ(full.activations, 14.0 * 8 * 256 * 768 * 4 / kMiB);
}

TEST(MemoryPlan, TensorParallelRankHoldsAboutAQuarterOfTheState) {
  const RankMemory one = plan_memory(gpt2_small({}))[0];
  const RankMemory tp4 = plan_memory(gpt2_small({"parallel.tp=4"}, 4))[0];
  // Layer norms and the position table stay replicated, so a TP rank holds a bit over 1/4.
  EXPECT_GT(tp4.params, one.params / 4.0);
  EXPECT_LT(tp4.params, one.params / 3.5);
  EXPECT_LT(tp4.activations, one.activations / 2.0);
  EXPECT_LT(tp4.peak, one.peak / 2.0);
}

TEST(MemoryPlan, PipelineStagesHoldTheMicroBatchesTheirScheduleKeepsInFlight) {
  const std::vector<std::string> pp2 = {"parallel.pp=2", "batch.global_batch_size=64",
                                        "keep-global"};
  std::vector<RankMemory> one_f_one_b = plan_memory(gpt2_small(pp2, 2));
  ASSERT_EQ(one_f_one_b.size(), 2u);
  EXPECT_EQ(one_f_one_b[0].micro_batches_held, 2);  // 1F1B: pp - stage
  EXPECT_EQ(one_f_one_b[1].micro_batches_held, 1);
  std::vector<std::string> gpipe = pp2;
  gpipe.push_back("parallel.schedule=GPIPE");
  const std::vector<RankMemory> all = plan_memory(gpt2_small(gpipe, 2));
  EXPECT_EQ(all[0].micro_batches_held, 8);  // GPipe: every micro-batch of the step
  EXPECT_EQ(all[1].micro_batches_held, 8);
  EXPECT_GT(all[0].activations, one_f_one_b[0].activations);
}

TEST(MemoryPlan, ZeroOneShardsTheOptimizerStateOverDataParallelRanks) {
  const RankMemory plain = plan_memory(gpt2_small({}, 4))[0];
  const RankMemory zero = plan_memory(gpt2_small({"parallel.zero_stage=1"}, 4))[0];
  EXPECT_DOUBLE_EQ(plain.optimizer, 2.0 * plain.params);
  EXPECT_DOUBLE_EQ(zero.optimizer, plain.optimizer / 4.0);
  // ZeRO-1 updates the parameters and gradients in place: its buffers are one all-gather round,
  // 2^22 f32 elements (16 MiB) from each of the 4 ranks plus this rank's own; no shard copies.
  EXPECT_DOUBLE_EQ(zero.comm, 16.0 * 5.0);
}

TEST(MemoryPlan, DpoAddsTheFrozenReferenceModel) {
  const RankMemory pretrain = plan_memory(gpt2_small({}))[0];
  const RankMemory dpo = plan_memory(gpt2_small({"stage=DPO", "dpo.train_path=p.jsonl", "dpo.reference=ref"}))[0];
  EXPECT_DOUBLE_EQ(pretrain.other_models, 0.0);
  EXPECT_DOUBLE_EQ(dpo.other_models, dpo.params);
}

// PPO: the reference (the policy's shape), the reward model and the trained critic (weights,
// gradients, two AdamW moments) each of its own source's shape; a rule reward needs no model.
TEST(MemoryPlan, PpoCountsTheRewardModelAndCriticAtTheirSourcesShapes) {
  const std::vector<std::string> ppo = {"stage=PPO", "init_from=@sft", "ppo.prompts_path=p.jsonl"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), ppo.begin(), ppo.end());
    return plan_memory(gpt2_small(extra))[0];
  };
  const RankMemory same = with({"ppo.reward_model=@reward"});  // a stage's: no shape to read
  EXPECT_DOUBLE_EQ(same.other_models, 6.0 * same.params);
  config::RunConfig grpo = gpt2_small({"stage=PPO", "init_from=@sft", "ppo.prompts_path=p.jsonl",
                                       "ppo.algorithm=GRPO", "ppo.reward_model=@reward"});
  grpo.mutable_ppo()->clear_reward();  // the rule alone (a --set cannot write a message list)
  grpo.mutable_ppo()->add_reward()->mutable_exact_match();
  const RankMemory rule = plan_memory(grpo)[0];
  EXPECT_DOUBLE_EQ(rule.other_models, rule.params);
  const RankMemory small =
      with({"ppo.reward_model=hf:" + std::string(LOOM_SOURCE_DIR) +
            "/tests/golden/hf/gpt2_untied_v300"});
  // That model by hand: 3 blocks of 7,224 (n_embd 24), 32 x 24 positions, untied 300-row tables
  // padded to 384 like the policy's (2 x 9,216), ln_f 48: 40,920 f32 parameters; the critic
  // starts from it too (ppo.critic_init defaults to ppo.reward_model).
  EXPECT_DOUBLE_EQ(small.other_models, small.params + 5.0 * 40920.0 * 4.0 / kMiB);
}

}  // namespace
}  // namespace loom::train

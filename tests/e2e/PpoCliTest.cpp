// `loom train` stage PPO end to end (issue 6): a tokenizer trained by loom, an SFT policy that
// answers "say W:" with " good W" or " bad W" half the time each, a reward model trained to prefer
// " good W", then PPO from the SFT checkpoint against that reward model. Checks: metrics are
// finite and in range and the reward-model score rises, resume is bitwise, the first iteration
// under `loom launch -n 2` matches one process with the same global batch, and a config without
// ppo.reward_model exits 2 naming the field.
#include <cmath>
#include <random>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

double mean_of(const std::vector<double>& v, size_t begin, size_t end) {
  double s = 0.0;
  for (size_t i = begin; i < end; ++i) s += v[i];
  return s / double(end - begin);
}

class PpoCliTest : public ::testing::Test {
 protected:
  // Data, tokenizer, SFT and reward checkpoints shared by every test of the suite.
  static void SetUpTestSuite() {
    dir_ = new TempDir("ppo");
    const std::vector<std::string> words = {"red", "blue", "green", "cat", "dog",
                                            "sun", "moon", "tree", "star", "fish"};
    std::mt19937 rng(5);
    std::string sft, pref, prompts, corpus;
    for (int i = 0; i < 96; ++i) {
      const std::string w = words[rng() % words.size()];
      const std::string good = rng() % 2 ? "good" : "bad";
      sft += "{\"prompt\":\"say " + w + ":\",\"response\":\" " + good + " " + w + "\"}\n";
      pref += "{\"prompt\":\"say " + w + ":\",\"chosen\":\" good " + w +
              "\",\"rejected\":\" bad " + w + "\"}\n";
      prompts += "{\"prompt\":\"say " + w + ":\"}\n";
      corpus += "say " + w + ": good " + w + "\nsay " + w + ": bad " + w + "\n";
    }
    write_file(file("sft.jsonl"), sft);
    write_file(file("pref.jsonl"), pref);
    write_file(file("prompts.jsonl"), prompts);
    write_file(file("corpus.txt"), corpus);
    RunResult t = run_loom("tokenizer train --input " + file("corpus.txt") +
                           " --vocab-size 300 --output " + file("tok"));
    ASSERT_EQ(t.exit_code, 0) << t.output;
    // 200 steps at a high LR: the tiny model must really learn the " good|bad W" format.
    RunResult s = run_loom("train " +
                           config("sft", "SFT", 200,
                                  "sft { train_path: \"" + file("sft.jsonl") + "\" }\n",
                                  "optimizer { lr: 1e-2 }\nschedule { warmup_steps: 2 "
                                  "decay_steps: 200 }\n"));
    ASSERT_EQ(s.exit_code, 0) << s.output;
    RunResult r = run_loom("train " +
                           config("rm", "REWARD", 30,
                                  "reward { train_path: \"" + file("pref.jsonl") + "\" }\n") +
                           " --set init_from=" + sft_ckpt());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::string sft_ckpt() { return file("sft/checkpoints/step_00000200"); }
  static std::string rm_ckpt() { return file("rm/checkpoints/step_00000030"); }

  // A config for `stage` writing to <dir>/<run>; `extra` adds fields.
  static std::string config(const std::string& run, const std::string& stage, int64_t steps,
                            const std::string& extra,
                            const std::string& optim = "optimizer { lr: 3e-3 }\n"
                                                       "schedule { warmup_steps: 2 "
                                                       "decay_steps: 30 }\n") {
    std::string path = file(run + ".pbtxt");
    write_file(path, "name: \"" + run + "\" stage: " + stage + " max_steps: " +
                         std::to_string(steps) + " output_dir: \"" + file(run) + "\"\n" +
                         "model { n_layer: 2 n_head: 2 n_embd: 32 vocab_size: 300 block_size: 24 "
                         "dropout: 0.0 }\n"
                         "data { tokenizer_vocab: \"" + file("tok/vocab.json") +
                         "\" tokenizer_merges: \"" + file("tok/merges.txt") + "\" }\n" + optim +
                         "batch { micro_batch_size: 8 global_batch_size: 8 }\n"
                         "checkpoint { interval: 0 }\nlogging { progress: OFF }\n" + extra);
    return path;
  }
  // A PPO config of `steps` iterations with `batch` prompts per rank per rollout.
  static std::string ppo_config(const std::string& run, int64_t steps, int64_t batch) {
    return config(run, "PPO", steps,
                  "init_from: \"" + sft_ckpt() + "\"\n"
                  "ppo { prompts_path: \"" + file("prompts.jsonl") + "\" reward_model: \"" +
                      rm_ckpt() + "\" kl_coef: 0.02 epochs: 2 mini_batches: 2 rollout { "
                      "max_new_tokens: 6 batch_size: " + std::to_string(batch) + " } }\n",
                  "optimizer { lr: 1e-3 }\nschedule { warmup_steps: 0 decay: CONSTANT }\n");
  }
  static TempDir* dir_;
};

TempDir* PpoCliTest::dir_ = nullptr;

TEST_F(PpoCliTest, MetricsAreFiniteAndTheScoreRises) {
  RunResult r = run_loom("train " + ppo_config("ppo", 16, 8));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string m = file("ppo/metrics.jsonl");
  for (const char* key : {"loss", "lr", "kl", "kl_coef", "policy_loss", "value_loss", "entropy",
                          "clip_fraction", "gen_s", "gen_tokens_per_s", "train_s",
                          "response_length", "logp_gap_mean", "logp_gap_max"}) {
    std::vector<double> v = values_of(m, key);
    ASSERT_EQ(v.size(), 16u) << key;
    for (double x : v) EXPECT_TRUE(std::isfinite(x)) << key;
  }
  for (double x : values_of(m, "response_length")) {
    EXPECT_GE(x, 1.0);
    EXPECT_LE(x, 6.0);
  }
  for (double x : values_of(m, "clip_fraction")) {
    EXPECT_GE(x, 0.0);
    EXPECT_LE(x, 1.0);
  }
  for (double x : values_of(m, "entropy")) EXPECT_GE(x, 0.0);
  // The engine samples the training distribution (no top-k / top-p): f32 rounding apart.
  for (double x : values_of(m, "logp_gap_max")) EXPECT_LT(x, 1e-4);
  // The first iteration's rollout comes from the SFT weights, which are also the reference.
  EXPECT_NEAR(values_of(m, "kl").front(), 0.0, 1e-4);  // f32 forwards of identical weights
  std::vector<double> score = values_of(m, "score_mean");
  ASSERT_EQ(score.size(), 16u);
  // The SFT policy says " good" about half the time; PPO should move towards it. Means over 4
  // iterations of 8 samples damp the sampling noise.
  EXPECT_GT(mean_of(score, 12, 16), mean_of(score, 0, 4) + 0.5)
      << "scores " << ::testing::PrintToString(score);
}

TEST_F(PpoCliTest, ResumeIsBitwise) {
  const std::string a = ppo_config("straight", 4, 4), b = ppo_config("split", 4, 4);
  RunResult ra = run_loom("train " + a);
  ASSERT_EQ(ra.exit_code, 0) << ra.output;
  RunResult rb1 = run_loom("train " + b + " --set max_steps=2 --set checkpoint.interval=2");
  ASSERT_EQ(rb1.exit_code, 0) << rb1.output;
  RunResult rb2 = run_loom("train " + b + " --resume auto");
  ASSERT_EQ(rb2.exit_code, 0) << rb2.output;
  for (const char* key : {"loss", "score_mean", "kl", "value_loss"}) {
    std::vector<double> va = values_of(file("straight/metrics.jsonl"), key);
    std::vector<double> vb = values_of(file("split/metrics.jsonl"), key);
    ASSERT_EQ(va.size(), 4u) << key;
    ASSERT_EQ(vb.size(), 4u) << key;
    // Actor, critic, both optimizers, KL coefficient, prompt order and sampling seeds resumed:
    // the same numbers to the 17 printed digits.
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(va[i], vb[i]) << key << " step " << i + 1;
  }
}

TEST_F(PpoCliTest, TwoRanksMatchOneProcessOnTheFirstIteration) {
  RunResult a = run_loom("train " + ppo_config("one", 1, 8));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  // (PPO does not use the batch section, but it must be valid for 2 ranks.)
  RunResult b = run_loom("launch -n 2 " + ppo_config("two", 1, 4) +
                         " --set batch.micro_batch_size=4");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  for (const char* key : {"loss", "score_mean", "kl", "policy_loss", "value_loss", "entropy",
                          "clip_fraction", "response_length"}) {
    std::vector<double> va = values_of(file("one/metrics.jsonl"), key);
    std::vector<double> vb = values_of(file("two/metrics.jsonl"), key);
    ASSERT_EQ(va.size(), 1u) << key;
    ASSERT_EQ(vb.size(), 1u) << key;
    // Issue criterion: 1e-4 relative (same samples; f32 sums in another order and padding to
    // another length). An absolute floor for values near 0 (kl of identical weights).
    EXPECT_NEAR(vb[0], va[0], 1e-4 * std::abs(va[0]) + 1e-6) << key;
  }
}

TEST_F(PpoCliTest, MissingRewardModelExitsTwoNamingTheField) {
  const std::string cfg = config("bad", "PPO", 1,
                                 "init_from: \"" + sft_ckpt() + "\"\nppo { prompts_path: \"" +
                                     file("prompts.jsonl") + "\" }\n");
  RunResult r = run_loom("train " + cfg);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("ppo.reward_model"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace loom::e2e

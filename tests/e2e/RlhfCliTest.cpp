// `loom train` with stages SFT, REWARD and DPO end to end (issue 6): a tokenizer trained with
// `loom tokenizer train` on the same text, tiny JSONL sets, a random-init GPT fine-tuned by SFT,
// then a reward model and a DPO policy started from that SFT checkpoint. Checks: SFT resume is
// bitwise, the reward model separates held-out pairs and its head is checkpointed, DPO starts at
// log 2 (policy = reference) and learns, a bad JSONL line names file and line.
#include <cmath>
#include <random>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

// Prompt "say W:" -> response " W W"; preference: chosen " good W", rejected " bad W".
struct RlhfData {
  explicit RlhfData(const TempDir& d) : dir(d) {
    const std::vector<std::string> words = {"red", "blue", "green", "cat", "dog",
                                            "sun", "moon", "tree", "star", "fish"};
    std::mt19937 rng(3);
    std::string sft, sft_val, pref, pref_val, corpus;
    for (int i = 0; i < 120; ++i) {
      const std::string w = words[rng() % words.size()], v = words[rng() % words.size()];
      std::string s = "{\"prompt\":\"say " + w + ":\",\"response\":\" " + w + " " + w + "\"}\n";
      std::string p = "{\"prompt\":\"say " + v + ":\",\"chosen\":\" good " + v +
                      "\",\"rejected\":\" bad " + v + "\"}\n";
      (i < 96 ? sft : sft_val) += s;
      (i < 96 ? pref : pref_val) += p;
      corpus += "say " + w + ": " + w + " " + w + "\nsay " + v + ": good " + v + " bad " + v + "\n";
    }
    write_file(dir.file("sft.jsonl"), sft);
    write_file(dir.file("sft_val.jsonl"), sft_val);
    write_file(dir.file("pref.jsonl"), pref);
    write_file(dir.file("pref_val.jsonl"), pref_val);
    write_file(dir.file("corpus.txt"), corpus);
  }
  // Trains the tokenizer; returns the `loom tokenizer train` result.
  RunResult train_tokenizer() const {
    return run_loom("tokenizer train --input " + dir.file("corpus.txt") +
                    " --vocab-size 300 --output " + dir.file("tok"));
  }
  // A config for `stage` writing to <dir>/<run>; `extra` adds fields.
  std::string config(const std::string& run, const std::string& stage, int64_t steps,
                     const std::string& extra) const {
    std::string path = dir.file(run + ".pbtxt");
    write_file(path, "name: \"" + run + "\" stage: " + stage + " max_steps: " +
                         std::to_string(steps) + " output_dir: \"" + dir.file(run) + "\"\n" +
                         "model { n_layer: 2 n_head: 2 n_embd: 32 vocab_size: 300 block_size: 24 "
                         "dropout: 0.1 }\n"
                         "data { tokenizer_vocab: \"" + dir.file("tok/vocab.json") +
                         "\" tokenizer_merges: \"" + dir.file("tok/merges.txt") + "\" }\n" +
                         "optimizer { lr: 3e-3 }\nschedule { warmup_steps: 2 decay_steps: 30 }\n"
                         "batch { micro_batch_size: 4 global_batch_size: 8 }\n"
                         "checkpoint { interval: 0 }\nlogging { progress: OFF }\n" + extra);
    return path;
  }
  std::string sft_fields() const {
    return "sft { train_path: \"" + dir.file("sft.jsonl") + "\" val_path: \"" +
           dir.file("sft_val.jsonl") + "\" }\neval { interval: 4 steps: 4 }\n";
  }
  // Runs SFT for `steps` from random init; returns its final checkpoint dir.
  std::string run_sft(int64_t steps) const {
    RunResult r = run_loom("train " + config("sft", "SFT", steps, sft_fields()));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    char name[32];
    std::snprintf(name, sizeof(name), "sft/checkpoints/step_%08lld", (long long)steps);
    return dir.file(name);
  }
  const TempDir& dir;
};

TEST(RlhfCliTest, SftLearnsAndResumesBitwise) {
  TempDir straight("sft_straight"), split("sft_split");
  RlhfData a(straight), b(split);
  ASSERT_EQ(a.train_tokenizer().exit_code, 0);
  ASSERT_EQ(b.train_tokenizer().exit_code, 0);
  std::string ca = a.config("run", "SFT", 16, a.sft_fields());
  std::string cb = b.config("run", "SFT", 16, b.sft_fields());
  RunResult ra = run_loom("train " + ca);
  ASSERT_EQ(ra.exit_code, 0) << ra.output;
  RunResult rb1 = run_loom("train " + cb + " --set max_steps=8 --set checkpoint.interval=8");
  ASSERT_EQ(rb1.exit_code, 0) << rb1.output;
  RunResult rb2 = run_loom("train " + cb + " --resume auto");
  ASSERT_EQ(rb2.exit_code, 0) << rb2.output;
  EXPECT_NE(rb2.output.find("steps 9-16"), std::string::npos) << rb2.output;
  std::vector<std::string> la = losses_of(straight.file("run/metrics.jsonl"));
  std::vector<std::string> lb = losses_of(split.file("run/metrics.jsonl"));
  ASSERT_EQ(la.size(), 16u);
  ASSERT_EQ(lb.size(), 16u);
  // Dropout is on and there are 2 micro-batches per step: equal text (17 significant digits)
  // means the example order, the RNG and the optimizer state all resumed exactly.
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
  std::vector<double> val = values_of(straight.file("run/metrics.jsonl"), "val_loss");
  ASSERT_GE(val.size(), 2u);
  EXPECT_LT(val.back(), 0.7 * val.front());  // the response " W W" is learnable from the prompt
}

TEST(RlhfCliTest, RewardModelSeparatesHeldOutPairsAndCheckpointsItsHead) {
  TempDir d("reward");
  RlhfData data(d);
  ASSERT_EQ(data.train_tokenizer().exit_code, 0);
  const std::string sft = data.run_sft(8);
  const std::string fields = "reward { train_path: \"" + d.file("pref.jsonl") +
                             "\" val_path: \"" + d.file("pref_val.jsonl") +
                             "\" }\neval { interval: 10 steps: 100 }\n";
  RunResult r = run_loom("train " + data.config("rm", "REWARD", 30, fields) +
                         " --set init_from=" + sft);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> acc = values_of(d.file("rm/metrics.jsonl"), "val_accuracy");
  std::vector<double> margin = values_of(d.file("rm/metrics.jsonl"), "val_margin");
  std::vector<double> loss = values_of(d.file("rm/metrics.jsonl"), "val_loss");
  ASSERT_EQ(acc.size(), 4u);  // steps 0, 10, 20, 30
  EXPECT_GE(acc.back(), 0.9);
  EXPECT_GT(margin.back(), margin.front() + 1.0);
  EXPECT_LT(loss.back(), 0.5 * loss.front());
  // A reward run started from the reward checkpoint keeps its head: its step-0 evaluation equals
  // the first run's last one (a fresh head would score differently).
  RunResult again = run_loom("train " + data.config("rm2", "REWARD", 1, fields) +
                             " --set schedule.warmup_steps=0 --set init_from=" +
                             d.file("rm/checkpoints/step_00000030"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  std::vector<double> margin2 = values_of(d.file("rm2/metrics.jsonl"), "val_margin");
  ASSERT_FALSE(margin2.empty());
  // Same weights, same batches, same kernels: identical up to the 17 printed digits.
  EXPECT_DOUBLE_EQ(margin2.front(), margin.back());
}

TEST(RlhfCliTest, RewardStageUnderTwoRanksMatchesOneProcess) {
  TempDir d("reward_dp");
  RlhfData data(d);
  ASSERT_EQ(data.train_tokenizer().exit_code, 0);
  const std::string fields = "reward { train_path: \"" + d.file("pref.jsonl") +
                             "\" val_path: \"" + d.file("pref_val.jsonl") +
                             "\" }\neval { interval: 0 }\n";
  // Global batch 8 either way: one process accumulates 2 micro-batches of 4, two ranks take one
  // each (the same 8 pairs), so the runs differ only by the order of the gradient sum.
  const std::string one = data.config("one", "REWARD", 3, fields);
  const std::string two = data.config("two", "REWARD", 3, fields);
  RunResult a = run_loom("train " + one + " --set model.dropout=0");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = run_loom("launch -n 2 " + two + " --set model.dropout=0");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  std::vector<double> la = values_of(d.file("one/metrics.jsonl"), "loss");
  std::vector<double> lb = values_of(d.file("two/metrics.jsonl"), "loss");
  std::vector<double> aa = values_of(d.file("one/metrics.jsonl"), "accuracy");
  std::vector<double> ab = values_of(d.file("two/metrics.jsonl"), "accuracy");
  ASSERT_EQ(la.size(), 3u);
  ASSERT_EQ(lb.size(), 3u);
  // f32 gradients summed in a different order, then 2 AdamW steps: a few ulps grow to ~1e-6.
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(lb[i], la[i], 1e-5 * std::abs(la[i])) << i;
  EXPECT_EQ(aa, ab);
}

TEST(RlhfCliTest, DpoStartsAtLogTwoAndLearnsThePreference) {
  TempDir d("dpo");
  RlhfData data(d);
  ASSERT_EQ(data.train_tokenizer().exit_code, 0);
  const std::string sft = data.run_sft(8);
  const std::string fields = "dpo { train_path: \"" + d.file("pref.jsonl") + "\" beta: 0.5 }\n";
  RunResult r = run_loom("train " + data.config("dpo", "DPO", 20, fields) +
                         " --set init_from=" + sft + " --set model.dropout=0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> loss = values_of(d.file("dpo/metrics.jsonl"), "loss");
  std::vector<double> acc = values_of(d.file("dpo/metrics.jsonl"), "reward_accuracy");
  std::vector<double> margin = values_of(d.file("dpo/metrics.jsonl"), "reward_margin");
  ASSERT_EQ(loss.size(), 20u);
  ASSERT_EQ(acc.size(), 20u);
  // Step 1: the policy is the reference (dropout off), so every h = 0 and the loss is log 2 up to
  // f32 rounding of the two identical forward passes' differences.
  EXPECT_NEAR(loss.front(), std::log(2.0), 1e-6);
  EXPECT_LT(loss.back(), 0.5 * std::log(2.0));
  EXPECT_GE(acc.back(), 0.9);
  EXPECT_GT(margin.back(), 0.0);
}

TEST(RlhfCliTest, BadJsonlLineNamesFileAndLine) {
  TempDir d("bad_jsonl");
  RlhfData data(d);
  ASSERT_EQ(data.train_tokenizer().exit_code, 0);
  write_file(d.file("sft.jsonl"),
             "{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"a\",\"response\":\"b\"}\n"
             "{\"prompt\": oops\n");
  RunResult r = run_loom("train " + data.config("bad", "SFT", 2, data.sft_fields()));
  EXPECT_EQ(r.exit_code, 1) << r.output;  // DataError
  EXPECT_NE(r.output.find(d.file("sft.jsonl") + ":3"), std::string::npos) << r.output;
  write_file(d.file("pref.jsonl"), "{\"prompt\":\"a\",\"chosen\":\"b\"}\n");
  RunResult p = run_loom("train " + data.config("badp", "REWARD", 2,
                                                "reward { train_path: \"" + d.file("pref.jsonl") +
                                                    "\" }\n"));
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_NE(p.output.find(d.file("pref.jsonl") + ":1"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("rejected"), std::string::npos) << p.output;
}

}  // namespace
}  // namespace loom::e2e

// The external-command reward at the level of a whole RL run (issue 14, item 2): a GRPO stage
// (tiny byte-level model, one process) scored by tests/rlhf/checkers/fail_after.sh, which answers
// the first N lines and then crashes, hangs past timeout_s or prints a line that is not JSON. The
// checker serves iterations 1-2 (4 samples each), the checkpoint of step 2 is written, and at
// iteration 3 the run stops with a DataError naming the checker's command line and what went
// wrong. The step-2 checkpoint stays the latest, verifies (sizes, SHA-256), and a run resumed from
// it with a checker that keeps scoring finishes steps 3-4 with the losses of an uninterrupted run.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "config/ConfigLoader.h"
#include "data/BpeTrainer.h"
#include "data/ByteLevel.h"
#include "io/Checkpoint.h"
#include "rlhf/Stages.h"
#include "tests/rlhf/RlhfTestUtil.h"
#include "train/Trainer.h"

namespace loom::rlhf {
namespace {

using Clock = std::chrono::steady_clock;

std::string checker() { return std::string(LOOM_SOURCE_DIR) + "/tests/rlhf/checkers/fail_after.sh"; }

// Samples scored per iteration: rollout.batch_size 2 x group_size 2.
constexpr int kRowsPerIteration = 4;

class RlCheckerStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::save_byte_tokenizer(dir_.write("vocab.json", ""), dir_.write("merges.txt", ""));
    std::string sft, prompts;
    for (const char* p : {"ab:", "hi ", "x=", "q: "}) {
      sft += std::string("{\"prompt\":\"") + p + "\",\"response\":\"ok\"}\n";
      prompts += std::string("{\"prompt\":\"") + p + "\"}\n";
    }
    dir_.write("sft.jsonl", sft);
    dir_.write("prompts.jsonl", prompts);
    // The policy's init checkpoint: a 1-step SFT run (any model of the right shape would do).
    init_ = run(base("SFT", 1, "init", "none") + "sft { train_path: \"" + file("sft.jsonl") +
                "\" }\n")
                .last_checkpoint;
  }

  std::string file(const std::string& name) const { return dir_.path() + "/" + name; }

  // The config lines every run shares: `stage`, `steps`, output in <dir>/<run>, checkpoints every
  // 2 steps in <dir>/<run>/checkpoints, checkpoint.resume `resume`.
  std::string base(const std::string& stage, int steps, const std::string& run,
                   const std::string& resume) const {
    return "name: \"" + run + "\"\nstage: " + stage + "\nseed: 5\nmax_steps: " +
           std::to_string(steps) + "\noutput_dir: \"" + file(run) + "\"\n" +
           "model { n_layer: 1 n_head: 2 n_embd: 16 vocab_size: 257 block_size: 24 dropout: 0 }\n"
           "data { seq_len: 24 tokenizer_vocab: \"" + file("vocab.json") +
           "\" tokenizer_merges: \"" + file("merges.txt") + "\" }\n" +
           "optimizer { lr: 1e-3 }\nschedule { warmup_steps: 0 }\n"
           "batch { micro_batch_size: 2 global_batch_size: 2 }\neval { interval: 0 }\n"
           "checkpoint { interval: 2 resume: \"" + resume + "\" }\n"
           "logging { progress: OFF tensorboard: false }\n";
  }

  // A GRPO run of 4 iterations into <dir>/<run> scored by `fail_after.sh mode n`.
  std::string grpo(const std::string& run, const std::string& mode, int n,
                   const std::string& resume) const {
    return base("PPO", 4, run, resume) + "init_from: \"" + init_ + "\"\n" +
           "ppo { algorithm: GRPO group_size: 2 epochs: 1 mini_batches: 1 sample_interval: 2\n"
           "  truncated_responses: KEEP\n"
           "  prompts_path: \"" + file("prompts.jsonl") + "\"\n"
           "  rollout { batch_size: 2 max_new_tokens: 4 }\n"
           "  reward { command { argv: \"/bin/sh\" argv: \"" + checker() + "\" argv: \"" + mode +
           "\" argv: \"" + std::to_string(n) + "\" timeout_s: 2 } } }\n";
  }

  train::TrainSummary run(const std::string& text) {
    const std::string path = dir_.write("run_" + std::to_string(runs_++) + ".pbtxt", text);
    train::Trainer t(config::resolve(path, {}, 1), nullptr, make_stage);
    return t.run();
  }

  // Runs `text`, which must fail; returns the error message.
  std::string expect_failure(const std::string& text) {
    try {
      run(text);
      ADD_FAILURE() << "expected the run to stop with a DataError";
    } catch (const DataError& e) {
      return e.what();
    }
    return "";
  }

  // The crash / hang / malformed case: the run stops at iteration 3 naming the checker and
  // `what`; the step-2 checkpoint is the latest, verifies, and resumes to the uninterrupted losses.
  void check_failure_keeps_the_checkpoint(const std::string& mode, const std::string& what) {
    const train::TrainSummary clean = run(grpo("clean_" + mode, "ok", 0, "none"));
    ASSERT_EQ(clean.losses.size(), 4u);
    // Responses cut at max_new_tokens stay in the loss (KEEP) and the checker's rewards differ
    // within groups, so the compared losses are not trivially 0.
    EXPECT_NE(clean.losses[2], 0.0);
    EXPECT_NE(clean.losses[3], 0.0);
    const std::string name = "fail_" + mode;
    const std::string msg = expect_failure(grpo(name, mode, 2 * kRowsPerIteration, "none"));
    const std::string command = "'/bin/sh " + checker() + " " + mode + " 8'";
    EXPECT_NE(msg.find("reward command " + command + ": batch 3: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    const std::string ckdir = file(name + "/checkpoints");
    EXPECT_EQ(io::find_latest_checkpoint(ckdir), ckdir + "/step_00000002");
    for (const auto& e : std::filesystem::directory_iterator(ckdir))
      EXPECT_EQ(e.path().filename().string().rfind("step_00000003", 0), std::string::npos)
          << "a checkpoint was started after the failure: " << e.path();
    EXPECT_NO_THROW(io::verify_checkpoint(ckdir + "/step_00000002"));
    // Resume from it (resume "auto" finds it) with a checker that keeps scoring.
    const train::TrainSummary resumed = run(grpo(name, "ok", 0, "auto"));
    EXPECT_EQ(resumed.first_step, 3);
    EXPECT_EQ(resumed.last_step, 4);
    ASSERT_EQ(resumed.losses.size(), 2u);
    // Sampling is seeded by (seed, step, row) and the checkpoint holds every other state: the
    // resumed iterations are the uninterrupted run's, bit for bit.
    EXPECT_EQ(resumed.losses[0], clean.losses[2]);
    EXPECT_EQ(resumed.losses[1], clean.losses[3]);
  }

  testing::TempDir dir_;
  std::string init_;
  int runs_ = 0;
};

TEST_F(RlCheckerStageTest, CrashingCheckerStopsTheRunAndTheLastCheckpointResumes) {
  check_failure_keeps_the_checkpoint(
      "crash", "expected 4 reward lines, got 0 before the checker exited with status 3");
}

TEST_F(RlCheckerStageTest, HangingCheckerIsKilledAtItsTimeoutAndTheLastCheckpointResumes) {
  const Clock::time_point t0 = Clock::now();
  check_failure_keeps_the_checkpoint(
      "hang", "expected 4 reward lines within timeout_s = 2 s, got 0; killed the checker");
  // The checker sleeps 30 s; the run must not wait for it. 2 s timeout + 3 tiny runs of 4
  // iterations each (about 1 s apiece here) with ample room for a loaded 2-core machine.
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 20.0);
}

TEST_F(RlCheckerStageTest, MalformedCheckerOutputStopsTheRunAndTheLastCheckpointResumes) {
  check_failure_keeps_the_checkpoint(
      "malformed", "line 1 (sample 0): expected {\"reward\": <finite number>}, got 'reward: 1' "
                   "(not valid JSON)");
}

TEST_F(RlCheckerStageTest, ScoringCheckerRewardsTheTruncatedFractionAndSamplesAreWritten) {
  const train::TrainSummary s = run(grpo("ok", "ok", 0, "none"));
  EXPECT_EQ(s.last_step, 4);
  EXPECT_EQ(s.last_checkpoint, file("ok/checkpoints/step_00000004"));
  // The checker's value is an integer in [0, 4] per sample, so its mean per iteration lies in
  // [0, 4]; read it back from the metrics file under the source's default name.
  std::ifstream f(file("ok/metrics.jsonl"));
  int lines = 0;
  for (std::string l; std::getline(f, l);) {
    const nlohmann::json j = nlohmann::json::parse(l);
    if (!j.contains("reward/command")) continue;
    ++lines;
    const double v = j["reward/command"].get<double>();
    EXPECT_GE(v, 0.0) << l;
    EXPECT_LE(v, 4.0) << l;
    EXPECT_EQ(j["score_mean"].get<double>(), v) << l;  // the only source, weight 1
    // The share of responses cut at max_new_tokens is reported every iteration.
    ASSERT_TRUE(j.contains("truncated_fraction")) << l;
    EXPECT_GE(j["truncated_fraction"].get<double>(), 0.0) << l;
    EXPECT_LE(j["truncated_fraction"].get<double>(), 1.0) << l;
  }
  EXPECT_EQ(lines, 4);
  // Samples of steps 2 and 4, one JSON line per sample. The tiny random model draws single bytes,
  // most of them not valid UTF-8 on their own: they are written as U+FFFD instead of stopping
  // the run.
  int replaced = 0;
  for (const char* name : {"step_00000002.jsonl", "step_00000004.jsonl"}) {
    std::ifstream samples(file(std::string("ok/samples/") + name));
    ASSERT_TRUE(samples.good()) << name;
    int n = 0;
    for (std::string l; std::getline(samples, l); ++n) {
      const nlohmann::json j = nlohmann::json::parse(l);
      ASSERT_TRUE(j["response"].is_string()) << l;
      replaced += j["response"].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos;
      EXPECT_GE(j["rewards"]["command"].get<double>(), 0.0) << l;
    }
    EXPECT_EQ(n, kRowsPerIteration) << name;
  }
  EXPECT_GT(replaced, 0);  // the case above did occur
}

}  // namespace
}  // namespace loom::rlhf

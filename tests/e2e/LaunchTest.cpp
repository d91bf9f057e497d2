// End-to-end tests of `loom launch` (the real binary, through mpirun): 2 ranks train the tiny
// config and log the losses a single process logs for the same global batch; a failing rank ends
// the job with its error; the Slurm hint; the mpirun command line.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

// One thread per rank (2 ranks share the 2-core test machine).
const std::string kEnv = "OMP_NUM_THREADS=1 ";

struct LaunchRun : ::testing::Test {
  TempDir dir{"launch"};
  std::string cfg = dir.file("tiny.pbtxt");
  void SetUp() override {
    write_random_dataset(dir.file("train.h5"), 20000, 64);
    write_random_dataset(dir.file("val.h5"), 2000, 64, 9);
    write_file(cfg, tiny_config(dir, 10));
  }
};

TEST_F(LaunchRun, TwoRanksMatchOneProcess) {
  // No dropout: the single process draws its masks for 2 micro-batches from one stream.
  const std::string sets = " --set model.dropout=0 --set checkpoint.interval=0";
  RunResult one = run_loom_env(kEnv, "train " + cfg + sets + " --set output_dir=" + dir.file("one"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  RunResult two = run_loom_env(kEnv, "launch -n 2 " + cfg + sets);
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("2 rank(s)"), std::string::npos) << two.output;
  EXPECT_NE(two.output.find("--tag-output"), std::string::npos) << two.output;
  EXPECT_NE(two.output.find("final loss"), std::string::npos) << two.output;
  auto a = losses_of(dir.file("one/metrics.jsonl"));
  auto b = losses_of(dir.file("run/metrics.jsonl"));
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);  // rank 0 alone writes metrics
  for (size_t i = 0; i < a.size(); ++i) {
    double x = std::stod(a[i]), y = std::stod(b[i]);
    // Issue 4: DP losses within 1e-5 relative of the single process at every step.
    EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(x)) << "step " << i + 1 << ": " << a[i] << " vs "
                                                    << b[i];
  }
  EXPECT_TRUE(std::filesystem::exists(dir.file("run/checkpoints/step_00000010")));
}

// Issue 4: `loom launch -n 4` runs the pretraining example's model and optimizer settings on 4
// local ranks as TP=2 x DP=2 (random tokens of its 4096-token vocabulary stand in for the fortunes
// corpus, so the test needs no corpus download or tokenizer training) and logs the losses of one
// process with the same global batch.
TEST_F(LaunchRun, PretrainExampleOnFourRanksTp2Dp2) {
  write_random_dataset(dir.file("ex_train.h5"), 60000, 4096);
  write_random_dataset(dir.file("ex_val.h5"), 6000, 4096, 9);
  const std::string example = std::string(LOOM_SOURCE_DIR) + "/examples/pretrain/config.pbtxt";
  const std::string sets =
      " --set data.train_path=" + dir.file("ex_train.h5") + " --set data.val_path=" +
      dir.file("ex_val.h5") + " --set max_steps=4 --set schedule.warmup_steps=1 --set eval.interval=2" +
      " --set eval.steps=2" +
      " --set batch.micro_batch_size=4 --set batch.global_batch_size=8 --set logging.progress=OFF";
  RunResult one = run_loom_env(kEnv, "train " + example + sets + " --set output_dir=" +
                                         dir.file("ex_one") + " --set checkpoint.dir=" +
                                         dir.file("ex_one/ck"));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  RunResult four = run_loom_env(kEnv, "launch -n 4 " + example + sets +
                                          " --set parallel.tp=2 --set output_dir=" +
                                          dir.file("ex_four") + " --set checkpoint.dir=" +
                                          dir.file("ex_four/ck"));
  ASSERT_EQ(four.exit_code, 0) << four.output;
  EXPECT_NE(four.output.find("4 rank(s)"), std::string::npos) << four.output;
  auto a = values_of(dir.file("ex_one/metrics.jsonl"), "loss");
  auto b = values_of(dir.file("ex_four/metrics.jsonl"), "loss");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i)  // issue 4: within 1e-5 relative at every step
    EXPECT_LE(std::abs(a[i] - b[i]), 1e-5 * std::abs(a[i])) << "step " << i + 1;
  auto va = values_of(dir.file("ex_one/metrics.jsonl"), "val_loss");
  auto vb = values_of(dir.file("ex_four/metrics.jsonl"), "val_loss");
  ASSERT_EQ(va.size(), vb.size());
  ASSERT_FALSE(va.empty());
  for (size_t i = 0; i < va.size(); ++i)
    EXPECT_LE(std::abs(va[i] - vb[i]), 1e-5 * std::abs(va[i])) << "eval " << i;
  EXPECT_TRUE(std::filesystem::exists(dir.file("ex_four/ck/step_00000004/MANIFEST.json")));
}

// Issue 4: a rank killed in the middle of a checkpoint save (the LOOM_TEST_KILL_RANK_IN_SAVE
// fault-injection hook of io/Checkpoint.h) ends the job, and the previous checkpoint stays the
// latest and loads: a single process resumes from it.
TEST_F(LaunchRun, RankKilledMidSaveLeavesPreviousCheckpoint) {
  const std::string sets = " --set model.dropout=0 --set parallel.tp=2 --set parallel.pp=2" +
                           std::string(" --set checkpoint.interval=0 --set checkpoint.resume=auto");
  RunResult first = run_loom_env(kEnv, "launch -n 4 " + cfg + sets + " --set max_steps=4");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_TRUE(std::filesystem::exists(dir.file("run/checkpoints/step_00000004/MANIFEST.json")));
  RunResult killed = run_loom_env(kEnv + "LOOM_TEST_KILL_RANK_IN_SAVE=1 ",
                                  "launch -n 4 " + cfg + sets + " --set max_steps=6");
  EXPECT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("run/checkpoints/step_00000006")))
      << killed.output;
  RunResult resumed = run_loom_env(
      kEnv, "train " + cfg + " --set model.dropout=0 --set checkpoint.resume=auto --set max_steps=6");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("step_00000004 at step 4"), std::string::npos) << resumed.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("run/checkpoints/step_00000006/MANIFEST.json")));
}

TEST_F(LaunchRun, FailingRanksEndTheJob) {
  RunResult r = run_loom_env(kEnv, "launch -n 2 " + cfg + " --set data.train_path=" +
                                       dir.file("missing.h5"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("loom: error: [rank "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing.h5"), std::string::npos) << r.output;
}

TEST_F(LaunchRun, CudaOnSeveralRanksIsAClearConfigError) {
  // The trainer's multi-rank reductions run over MPI on CPU tensors; NCCL is not wired in yet.
  RunResult r = run_loom_env(kEnv, "launch -n 2 " + cfg + " --set device=CUDA");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("device=CUDA on 2 ranks"), std::string::npos) << r.output;
}

TEST_F(LaunchRun, SlurmWithoutRankCountPointsToSrun) {
  RunResult r = run_loom_env("SLURM_JOB_ID=42 ", "launch " + cfg);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("srun loom train"), std::string::npos) << r.output;
}

// Found by the drills (scripts/drills.sh): mpirun's own text and exit code 1 before.
TEST_F(LaunchRun, MissingHostfileIsACommandLineErrorNamingIt) {
  RunResult r = run_loom_env(kEnv, "launch -n 2 --hostfile " + dir.file("no-hosts") + " " + cfg);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("loom: error: loom launch: --hostfile \"" + dir.file("no-hosts")),
            std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("mpirun -np"), std::string::npos) << "mpirun must not start";
}

TEST_F(LaunchRun, DryRunShowsTheMpirunCommand) {
  RunResult r = run_loom("launch -n 3 --hostfile hosts.txt --dry-run " + cfg +
                         " --set optimizer.lr=1e-3 --set batch.global_batch_size=6");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* part : {"mpirun -np 3", "--hostfile hosts.txt", "--tag-output", " train ",
                           "--set optimizer.lr=1e-3"})
    EXPECT_NE(r.output.find(part), std::string::npos) << part << " in " << r.output;
  EXPECT_EQ(r.output.find("--oversubscribe"), std::string::npos) << "not with a hostfile";
}

}  // namespace
}  // namespace loom::e2e

// Exact resume (issue 3): 20 steps straight vs 10 steps + checkpoint + a NEW PROCESS with
// `--resume auto` + 10 steps give bit-identical losses for steps 11-20. Dropout is on and gradient
// accumulation is 2, so the RNG state and the data-loader position must both be restored.
#include <string>
#include <vector>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

TEST(ResumeTest, TwentyStepsEqualTenPlusResumePlusTenBitwise) {
  TempDir straight("resume_straight"), split("resume_split");
  for (const TempDir* d : {&straight, &split}) {
    write_random_dataset(d->file("train.h5"), 4000, 64);
    write_random_dataset(d->file("val.h5"), 600, 64, 8);
    write_file(d->file("cfg.pbtxt"), tiny_config(*d, 20));
  }
  RunResult a = run_loom("train " + straight.file("cfg.pbtxt"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b1 = run_loom("train " + split.file("cfg.pbtxt") + " --set max_steps=10");
  ASSERT_EQ(b1.exit_code, 0) << b1.output;
  RunResult b2 = run_loom("train " + split.file("cfg.pbtxt") + " --resume auto");
  ASSERT_EQ(b2.exit_code, 0) << b2.output;
  EXPECT_NE(b2.output.find("steps 11-20"), std::string::npos) << b2.output;

  std::vector<std::string> la = losses_of(straight.file("run/metrics.jsonl"));
  std::vector<std::string> lb = losses_of(split.file("run/metrics.jsonl"));
  ASSERT_EQ(la.size(), 20u);
  ASSERT_EQ(lb.size(), 20u);  // metrics.jsonl is appended by the resumed process
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
  // Losses are printed with 17 significant digits, so equal text means equal doubles; the
  // loss must also have moved, or the comparison would prove little.
  EXPECT_NE(la.front(), la.back());
}

// Issue 15: resuming from an older checkpoint truncates metrics.jsonl at the resume step, so the
// replayed steps are logged once (a resumed PPO run had 351 lines for 300 steps).
TEST(ResumeTest, ResumingFromAnOlderCheckpointLogsEveryStepOnce) {
  TempDir d("resume_older");
  write_tiny_run(d, 12);
  RunResult a = run_loom("train " + d.file("cfg.pbtxt") + " --set checkpoint.keep_last=0");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = run_loom("train " + d.file("cfg.pbtxt") + " --set checkpoint.keep_last=0 --resume " +
                         d.file("run/checkpoints/step_00000005"));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find("steps 6-12"), std::string::npos) << b.output;
  // One loss line per step: 12, not 12 + the 7 replayed ones.
  EXPECT_EQ(losses_of(d.file("run/metrics.jsonl")).size(), 12u);
}

// Found by the drills (scripts/drills.sh): model.bias=false only drops tensors, so every shape
// fitted and the resume trained on without the saved biases (exit 0).
TEST(ResumeTest, ResumingWithAnotherModelArchitectureIsACheckpointError) {
  TempDir d("resume_other_model");
  write_tiny_run(d, 5);
  RunResult a = run_loom("train " + d.file("cfg.pbtxt"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const std::string ck = d.file("run/checkpoints/step_00000005");
  const std::vector<std::string> sets = {"model.bias=false", "model.tie_embeddings=false"};
  for (const std::string& set : sets) {
    RunResult b = run_loom("train " + d.file("cfg.pbtxt") + " --set max_steps=6 --set " + set +
                           " --resume " + ck);
    EXPECT_EQ(b.exit_code, 3) << set << "\n" << b.output;
    EXPECT_NE(b.output.find(ck), std::string::npos) << b.output;
    EXPECT_NE(b.output.find(set.substr(0, set.find('='))), std::string::npos) << b.output;
  }
  RunResult same = run_loom("train " + d.file("cfg.pbtxt") + " --set max_steps=6 --resume " + ck);
  EXPECT_EQ(same.exit_code, 0) << same.output;
}

}  // namespace
}  // namespace loom::e2e

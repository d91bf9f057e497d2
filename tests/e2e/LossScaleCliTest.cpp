// Dynamic loss scaling in `loom train` (issue 5 item 3), on the CPU in f32, where scaling by a power
// of two is exact: a 2^16 scale trains bitwise like no scaling; an overflowing scale skips steps
// and halves until the gradients are finite; the scaler's state resumes bitwise; precision modes
// the CPU cannot run are config errors.
#include <cmath>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

struct LossScaleRun : ::testing::Test {
  TempDir dir{"loss_scale"};
  std::string cfg = dir.file("cfg.pbtxt");
  void SetUp() override {
    write_random_dataset(dir.file("train.h5"), 4000, 64);
    write_random_dataset(dir.file("val.h5"), 600, 64, 8);
    write_file(cfg, tiny_config(dir, 10));
  }
  RunResult train(const std::string& out, const std::string& sets) {
    return run_loom("train " + cfg + " --set output_dir=" + dir.file(out) + " --set checkpoint.dir=" +
                    dir.file(out + "/ck") + sets);
  }
};

TEST_F(LossScaleRun, PowerOfTwoScaleTrainsBitwiseLikeNoScaling) {
  RunResult a = train("plain", "");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = train("scaled", " --set loss_scale.init_scale=65536");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  std::vector<std::string> la = losses_of(dir.file("plain/metrics.jsonl"));
  std::vector<std::string> lb = losses_of(dir.file("scaled/metrics.jsonl"));
  ASSERT_EQ(la.size(), 10u);
  EXPECT_EQ(la, lb);  // x 2^16 before backward and / 2^16 after are exact in f32
  for (double s : values_of(dir.file("scaled/metrics.jsonl"), "loss_scale")) EXPECT_EQ(s, 65536.0);
  for (double k : values_of(dir.file("scaled/metrics.jsonl"), "skipped_steps")) EXPECT_EQ(k, 0.0);
}

TEST_F(LossScaleRun, OverflowSkipsStepsAndBacksOff) {
  // 2^130 is beyond f32 (max ~2^128), so the scaled loss is inf: step 1 is skipped and the scale
  // halves; how many more halvings the backward needs to stay finite depends on the gradients.
  RunResult r = train("over", " --set loss_scale.init_scale=1.3611294676837539e39");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto scale = values_of(dir.file("over/metrics.jsonl"), "loss_scale");
  auto skipped = values_of(dir.file("over/metrics.jsonl"), "skipped_steps");
  auto loss = values_of(dir.file("over/metrics.jsonl"), "loss");
  ASSERT_EQ(scale.size(), 10u);
  ASSERT_EQ(skipped.size(), 10u);
  EXPECT_EQ(skipped[0], 1.0);
  EXPECT_EQ(scale[0], std::ldexp(1.0, 129));
  double prev_scale = std::ldexp(1.0, 130), prev_skipped = 0;
  for (size_t i = 0; i < scale.size(); ++i) {
    // Each skipped step halves the scale exactly; a good step keeps it (growth_interval 2000).
    const bool skipped_now = skipped[i] == prev_skipped + 1;
    EXPECT_TRUE(skipped_now || skipped[i] == prev_skipped) << "step " << i + 1;
    EXPECT_EQ(scale[i], skipped_now ? prev_scale / 2 : prev_scale) << "step " << i + 1;
    EXPECT_TRUE(std::isfinite(loss[i]));
    prev_scale = scale[i];
    prev_skipped = skipped[i];
  }
  EXPECT_LT(skipped.back(), 10.0);  // it recovered and trained
}

TEST_F(LossScaleRun, ScalerStateResumesBitwise) {
  // growth_interval 3: the scale grows at steps 3, 6, 9, so the resumed run must restore both the
  // scale and the count of good steps since the last growth.
  const std::string sets = " --set loss_scale.init_scale=1024 --set loss_scale.growth_interval=3";
  RunResult a = train("straight", sets);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b1 = train("split", sets + " --set max_steps=5");
  ASSERT_EQ(b1.exit_code, 0) << b1.output;
  RunResult b2 = train("split", sets + " --set checkpoint.resume=auto");
  ASSERT_EQ(b2.exit_code, 0) << b2.output;
  EXPECT_EQ(losses_of(dir.file("straight/metrics.jsonl")), losses_of(dir.file("split/metrics.jsonl")));
  auto sa = values_of(dir.file("straight/metrics.jsonl"), "loss_scale");
  EXPECT_EQ(sa, values_of(dir.file("split/metrics.jsonl"), "loss_scale"));
  ASSERT_EQ(sa.size(), 10u);
  EXPECT_EQ(sa.back(), 8192.0);  // 1024 * 2^3
}

TEST_F(LossScaleRun, PrecisionTheCpuCannotRunIsAConfigError) {
  RunResult bf = train("bf", " --set dtype=BF16");
  EXPECT_EQ(bf.exit_code, 2) << bf.output;
  EXPECT_NE(bf.output.find("dtype=BF16"), std::string::npos) << bf.output;
  EXPECT_NE(bf.output.find("device=CUDA"), std::string::npos) << bf.output;
  RunResult f16 = train("f16", " --set dtype=F16 --set loss_scale.init_scale=1024");
  EXPECT_EQ(f16.exit_code, 2) << f16.output;
  EXPECT_NE(f16.output.find("dtype=F16"), std::string::npos) << f16.output;
}

}  // namespace
}  // namespace loom::e2e

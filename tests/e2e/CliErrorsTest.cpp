// Bad inputs to `loom` give clear errors with the documented exit codes (issue 3): unknown config
// field (file:line:column), wrong type, tp*pp*dp not matching the world, a missing data file, a
// dataset whose vocabulary exceeds the model's, a truncated checkpoint.
#include <filesystem>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

void expect_contains(const RunResult& r, const std::vector<std::string>& parts) {
  for (const std::string& p : parts) EXPECT_NE(r.output.find(p), std::string::npos) << p << "\n" << r.output;
}

TEST(CliErrorsTest, UnknownFieldNamesFileLineColumn) {
  TempDir d("unknown_field");
  write_file(d.file("c.pbtxt"), "max_steps: 5\nmodel {\n  n_layers: 2\n}\n");
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2);
  expect_contains(r, {d.file("c.pbtxt") + ":3:3", "n_layers", "n_layer"});
}

TEST(CliErrorsTest, WrongTypeIsAConfigError) {
  TempDir d("wrong_type");
  write_file(d.file("c.pbtxt"), "max_steps: \"many\"\n");
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2);
  // protobuf's parser names the position and the expected type ("Expected integer").
  expect_contains(r, {d.file("c.pbtxt") + ":1:12", "integer", "many"});
  RunResult s = run_loom("train " + d.file("c.pbtxt") + " --set optimizer.lr=fast");
  EXPECT_EQ(s.exit_code, 2);
}

TEST(CliErrorsTest, ParallelLayoutMustMatchTheWorld) {
  TempDir d("layout");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 5) + "parallel { tp: 2 pp: 2 dp: 1 }\n");
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2);
  expect_contains(r, {"tp", "pp", "dp", "world"});
}

TEST(CliErrorsTest, MissingDataFileIsNamed) {
  TempDir d("missing_data");
  write_file(d.file("c.pbtxt"), tiny_config(d, 5));  // train.h5 never written
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r, {d.file("train.h5"), "does not exist"});
}

TEST(CliErrorsTest, DatasetVocabLargerThanModelIsRejected) {
  TempDir d("vocab");
  write_random_dataset(d.file("train.h5"), 2000, 1000);  // ids up to 999, model vocab 64
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 5));
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_NE(r.exit_code, 0);
  expect_contains(r, {"1000", "64"});
}

TEST(CliErrorsTest, TruncatedCheckpointIsRejectedWithExitCode3) {
  TempDir d("truncated");
  write_random_dataset(d.file("train.h5"), 2000, 64);
  write_random_dataset(d.file("val.h5"), 500, 64);
  write_file(d.file("c.pbtxt"), tiny_config(d, 4));
  RunResult first = run_loom("train " + d.file("c.pbtxt"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  std::string ck = d.file("run/checkpoints/step_00000004");
  std::filesystem::resize_file(ck + "/tensors-r00000.h5", 100);  // one rank: one tensor file
  RunResult r = run_loom("train " + d.file("c.pbtxt") + " --set max_steps=6 --resume " + ck);
  EXPECT_EQ(r.exit_code, 3);
  expect_contains(r, {"tensors-r00000.h5", "truncated"});
}

TEST(CliErrorsTest, UnknownVerbAndFlag) {
  EXPECT_EQ(run_loom("fly").exit_code, 2);
  RunResult r = run_loom("train x.pbtxt --bogus 1");
  EXPECT_EQ(r.exit_code, 2);
  expect_contains(r, {"unknown flag --bogus", "--set"});
}

}  // namespace
}  // namespace loom::e2e

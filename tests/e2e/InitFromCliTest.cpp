// `init_from` a Loom checkpoint takes the checkpoint's model shape (issue 12): a config with no
// model { } block fine-tunes it as is, and a model field that disagrees with the checkpoint is a
// config error naming the field and both values; a checkpoint root (what checkpoint.dir holds)
// stands for the step its `latest` names.
#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

TEST(InitFromCli, LoomCheckpointGivesTheModelShape) {
  TempDir d("init_from_shape");
  write_tiny_run(d, 3);
  RunResult base = run_loom("train " + d.file("cfg.pbtxt"));
  ASSERT_EQ(base.exit_code, 0) << base.output;
  const std::string ft = "name: \"ft\"\nmax_steps: 2\noutput_dir: \"" + d.file("ft") + "\"\n" +
                         "init_from: \"" + d.file("run/checkpoints/step_00000003") + "\"\n" +
                         "data { train_path: \"" + d.file("train.h5") + "\" seq_len: 16 }\n" +
                         "batch { micro_batch_size: 2 }\neval { interval: 0 }\n"
                         "logging { progress: OFF }\n";
  write_file(d.file("ft.pbtxt"), ft);
  RunResult r = run_loom("train " + d.file("ft.pbtxt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // tiny_config's model: 2 layers x 32 wide, 64 tokens, block 16: 28,032 parameters.
  EXPECT_NE(r.output.find("28032 parameters"), std::string::npos) << r.output;
  RunResult bad = run_loom("train " + d.file("ft.pbtxt") + " --set model.n_layer=3");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("model.n_layer=3 but"), std::string::npos) << bad.output;
}

TEST(InitFromCli, ACheckpointRootStartsFromTheStepItsLatestNames) {
  TempDir d("init_from_root");
  write_tiny_run(d, 10);  // checkpoints at steps 5 and 10
  RunResult base = run_loom("train " + d.file("cfg.pbtxt"));
  ASSERT_EQ(base.exit_code, 0) << base.output;
  // A rollback: latest names step 5, the older of the two, so "the newest step" would be wrong.
  write_file(d.file("run/checkpoints/latest"), "step_00000005\n");
  auto ft = [&](const std::string& name, const std::string& from) {
    write_file(d.file(name + ".pbtxt"),
               "name: \"" + name + "\"\nmax_steps: 2\noutput_dir: \"" + d.file(name) + "\"\n" +
                   "init_from: \"" + from + "\"\ndata { train_path: \"" + d.file("train.h5") +
                   "\" seq_len: 16 }\nbatch { micro_batch_size: 2 }\neval { interval: 0 }\n"
                   "logging { progress: OFF }\n");
    RunResult r = run_loom("train " + d.file(name + ".pbtxt"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return losses_of(d.file(name + "/metrics.jsonl"));
  };
  const std::vector<std::string> from_root = ft("root", d.file("run/checkpoints"));
  ASSERT_EQ(from_root.size(), 2u);
  EXPECT_EQ(from_root, ft("step5", d.file("run/checkpoints/step_00000005")));
  EXPECT_NE(from_root, ft("step10", d.file("run/checkpoints/step_00000010")));
  std::filesystem::create_directories(d.file("empty"));
  RunResult none =
      run_loom("train " + d.file("root.pbtxt") + " --set init_from=" + d.file("empty"));
  EXPECT_EQ(none.exit_code, 3) << none.output;  // a checkpoint error
  EXPECT_NE(none.output.find("init_from=" + d.file("empty") + ": expected a Loom checkpoint"),
            std::string::npos)
      << none.output;
}

}  // namespace
}  // namespace loom::e2e

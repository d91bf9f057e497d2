// `init_from` a Loom checkpoint takes the checkpoint's model shape (issue 12): a config with no
// model { } block fine-tunes it as is, and a model field that disagrees with the checkpoint is a
// config error naming the field and both values.
#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

TEST(InitFromCli, LoomCheckpointGivesTheModelShape) {
  TempDir d("init_from_shape");
  write_random_dataset(d.file("train.h5"), 4000, 64);
  write_random_dataset(d.file("val.h5"), 600, 64, 8);
  write_file(d.file("cfg.pbtxt"), tiny_config(d, 3));
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

}  // namespace
}  // namespace loom::e2e

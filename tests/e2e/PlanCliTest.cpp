// `loom plan CONFIG [--set ...] [--world N]` prints the resolved config, the parameter count and
// the parallel layout without touching any data, and its flags are range-checked.
#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

TEST(PlanCliTest, PrintsTheResolvedLayoutForAWorld) {
  const std::string cfg = std::string(LOOM_SOURCE_DIR) + "/configs/gpt2-124m.pbtxt";
  RunResult r = run_loom("plan " + cfg + " --world 8 --set parallel.tp=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // GPT-2 124M with the vocabulary padded to 50304 rows and a tied head: 124,475,904 parameters.
  EXPECT_NE(r.output.find("# parameters: 124475904"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# layout: tp=2 pp=1 dp=4"), std::string::npos) << r.output;
  RunResult bad = run_loom("plan " + cfg + " --world 0");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--world expects an integer in [1, "), std::string::npos) << bad.output;
  RunResult resume = run_loom("plan " + cfg + " --resume auto");  // a train flag, not plan's
  EXPECT_EQ(resume.exit_code, 2) << resume.output;
  EXPECT_NE(resume.output.find("unknown flag --resume"), std::string::npos) << resume.output;
}

}  // namespace
}  // namespace loom::e2e

// Harness self-test (TESTPLAN R-18): runs the deliberately failing helper under mpirun -np 4 and
// checks that MpiMain reports the rank-3-only failure as failed, prints rank 3's assertion text on
// rank 0 with an "[r3]" prefix, keeps the passing test passing, and exits non-zero. Running the
// helper as a child process keeps this suite green while proving the harness can go red.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace {

struct Result {
  int exit_code = -1;
  std::string output;
};

Result run(const std::string& cmd) {
  Result res;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return res;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) res.output.append(buf, n);
  int status = pclose(p);
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

TEST(MpiHarnessTest, FailureOnOneRankIsReportedOnAllRanksWithItsText) {
  Result r = run(std::string(LOOM_MPIEXEC) + " -n 4 --oversubscribe --allow-run-as-root " +
                 LOOM_HARNESS_HELPER + " --gtest_color=no");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[       OK ] HarnessHelper.PassesOnEveryRank"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[  FAILED  ] HarnessHelper.FailsOnlyOnRank3"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("test failed on rank(s) [3]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[r3] "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("deliberate failure marker from rank 3"), std::string::npos) << r.output;
  // Only rank 0 prints gtest's report: the run header appears exactly once.
  size_t first = r.output.find("[==========] Running 2 tests");
  ASSERT_NE(first, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[==========] Running 2 tests", first + 1), std::string::npos) << r.output;
}

}  // namespace

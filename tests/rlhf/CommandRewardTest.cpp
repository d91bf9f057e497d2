// The external-command reward source with the checker scripts in tests/rlhf/checkers/: a checker
// that scores (fields passed through, large batches without deadlock, stderr to a file or
// forwarded, a shell command line), and checkers that crash, hang, print malformed JSON or the
// wrong number of lines, each of which must give a DataError naming the command, the batch and
// the line within its timeout and leave no process behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "core/util/Check.h"
#include "rlhf/CommandReward.h"
#include "tests/rlhf/RlhfTestUtil.h"

namespace loom::rlhf {
namespace {

using Clock = std::chrono::steady_clock;

std::string checker(const std::string& name) {
  return std::string(LOOM_SOURCE_DIR) + "/tests/rlhf/checkers/" + name;
}

CommandRewardOptions sh(const std::string& script, const std::string& mode = "",
                        double timeout_s = 5.0) {
  CommandRewardOptions o{.argv = {"/bin/sh", checker(script)}, .timeout_s = timeout_s};
  if (!mode.empty()) o.argv.push_back(mode);
  return o;
}

RewardSample sample(const std::string& response, const std::string& answer = "4") {
  return {
      .prompt = "What is 2+2?", .response = response, .fields = {{"answer", "\"" + answer + "\""}}};
}

std::vector<RewardSample> samples(size_t n) {
  std::vector<RewardSample> out;
  for (size_t i = 0; i < n; ++i) out.push_back(sample(i % 2 ? "4" : "5"));
  return out;
}

// True once `pid` is reaped (by us) and no live process is left in its process group.
bool fully_gone(pid_t pid) {
  if (!(::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD)) return false;
  const Clock::time_point until = Clock::now() + std::chrono::seconds(2);
  for (;;) {  // SIGKILLed group members take a moment to exit
    bool live = false;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;  // not a process
      std::ifstream f(e.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(f)), {});
      const size_t rp = stat.rfind(')');
      if (rp == std::string::npos) continue;
      char state = 0;
      int ppid = 0, pgrp = 0;
      if (std::sscanf(stat.c_str() + rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) continue;
      live |= pgrp == pid && state != 'Z';
    }
    if (!live) return true;
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Runs one batch that must fail; returns the message and checks it came within `limit_s` and
// that the checker is gone.
std::string expect_failure(CommandReward& r, const std::vector<RewardSample>& batch,
                           double limit_s) {
  const pid_t pid = r.pid();
  const Clock::time_point t0 = Clock::now();
  std::string msg;
  try {
    r.score(batch);
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    msg = e.what();
  }
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took, limit_s) << msg;
  EXPECT_EQ(r.pid(), -1);
  EXPECT_TRUE(fully_gone(pid)) << "checker " << pid << " left behind";
  return msg;
}

TEST(CommandRewardTest, ScoresBatchesInOrderWithFieldsPassedThrough) {
  CommandReward r(sh("score.sh"));
  std::vector<RewardSample> b = {sample("4"), sample("5"), sample("neg"), sample("4", "5")};
  EXPECT_EQ(r.score(b), (std::vector<double>{1, 0, -0.25, 0}));
  EXPECT_EQ(r.describe(), "reward command '/bin/sh " + checker("score.sh") + "'");
  // The same process answers later batches; a response with a newline and invalid UTF-8 is
  // still one JSON line.
  const pid_t pid = r.pid();
  EXPECT_EQ(r.score({sample("a\nb\xff"), sample("4")}), (std::vector<double>{0, 1}));
  EXPECT_EQ(r.pid(), pid);
  EXPECT_TRUE(r.score({}).empty());
}

TEST(CommandRewardTest, LargeBatchAndStderrToFileDoNotDeadlock) {
  // ~1.2 MB each way on stdin and stderr: far beyond a 64 KiB pipe buffer.
  loom::rlhf::testing::TempDir dir;
  const std::string log = dir.write("checker.log", "");
  CommandRewardOptions o = sh("score.sh", "", 60.0);
  o.stderr_path = log;
  CommandReward r(o);
  std::vector<RewardSample> b = samples(4000);
  for (RewardSample& s : b) s.prompt = std::string(300, 'p');
  std::vector<double> got = r.score(b);
  ASSERT_EQ(got.size(), b.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], i % 2 ? 1.0 : 0.0) << i;
  std::ifstream f(log);
  size_t lines = 0;
  for (std::string l; std::getline(f, l);) lines += l.rfind("score.sh: {", 0) == 0;
  EXPECT_EQ(lines, b.size());
}

TEST(CommandRewardTest, StderrIsForwardedByDefaultAndShellCommandLinesWork) {
  ::testing::internal::CaptureStderr();
  {
    CommandReward r(sh("score.sh"));
    EXPECT_EQ(r.score({sample("4")}), (std::vector<double>{1}));
  }  // the destructor reaps the checker, so all of its stderr has been written
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("score.sh: {\"prompt\""),
            std::string::npos);
  CommandReward shell({.argv = {"sh '" + checker("score.sh") + "' 2>/dev/null"}, .shell = true});
  EXPECT_EQ(shell.score({sample("neg")}), (std::vector<double>{-0.25}));
}

TEST(CommandRewardTest, DestructorReapsTheChecker) {
  pid_t pid = -1;
  {
    CommandReward r(sh("score.sh"));
    pid = r.pid();
    ASSERT_GT(pid, 0);
  }
  EXPECT_TRUE(fully_gone(pid));
  // A checker that ignores EOF is killed after the grace period instead of blocking forever.
  CommandReward* hang = new CommandReward(sh("hang.sh"));
  pid = hang->pid();
  const Clock::time_point t0 = Clock::now();
  delete hang;
  // 2 s of grace (CommandReward.h) plus time to kill and reap.
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
  EXPECT_TRUE(fully_gone(pid));
}

TEST(CommandRewardTest, CrashingCheckerIsAnErrorWithItsExitStatus) {
  CommandReward r(sh("crash.sh", "exit"));
  std::string msg = expect_failure(r, samples(3), 5.0);  // must not wait for the 5 s timeout
  EXPECT_NE(msg.find("reward command '/bin/sh " + checker("crash.sh") +
                     " exit': batch 1: "
                     "expected 3 reward lines, got 1 before the checker exited with status 3"),
            std::string::npos)
      << msg;
  // The next batch starts a fresh checker: one sample is answered, the second batch crashes.
  EXPECT_EQ(r.score(samples(1)), (std::vector<double>{1}));
  msg = expect_failure(r, samples(1), 5.0);
  EXPECT_NE(msg.find("batch 3: expected 1 reward lines, got 0 before the checker exited with "
                     "status 3"),
            std::string::npos)
      << msg;
  CommandReward killed(sh("crash.sh", "signal"));
  msg = expect_failure(killed, samples(2), 5.0);
  EXPECT_NE(msg.find("got 1 before the checker was killed by signal 15"), std::string::npos) << msg;
}

TEST(CommandRewardTest, HangingCheckerIsKilledAtTheTimeout) {
  CommandReward r(sh("hang.sh", "", /*timeout_s=*/1.0));
  // The 1 s timeout, plus killing and reaping on a loaded 2-core machine.
  std::string msg = expect_failure(r, samples(2), 2.0);
  EXPECT_NE(
      msg.find(
          "batch 1: expected 2 reward lines within timeout_s = 1 s, got 1; killed the checker"),
      std::string::npos)
      << msg;
}

TEST(CommandRewardTest, MalformedAnswersNameTheLine) {
  const std::pair<const char*, const char*> cases[] = {
      {"json",
       "line 2 (sample 1): expected {\"reward\": <finite number>}, got '{\"reward\": oops' "
       "(not valid JSON)"},
      {"nan", "got '{\"reward\": NaN}' (a non-finite reward: NaN and Infinity are not JSON)"},
      {"missing", "got '{\"score\": 1}' (no numeric \"reward\" field)"},
      {"string", "got '{\"reward\": \"1\"}' (no numeric \"reward\" field)"}};
  for (auto [mode, want] : cases) {
    CommandReward r(sh("malformed.sh", mode));
    std::string msg = expect_failure(r, samples(3), 5.0);
    EXPECT_NE(msg.find(std::string("malformed.sh ") + mode + "': batch 1: "), std::string::npos)
        << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  }
}

TEST(CommandRewardTest, WrongNumberOfLinesIsAnError) {
  CommandReward more(sh("wrong_count.sh", "more"));
  std::string msg = expect_failure(more, samples(1), 5.0);
  EXPECT_NE(msg.find("batch 1: expected 1 reward lines, got more: line 2 is '{\"reward\": 2}'"),
            std::string::npos)
      << msg;
  CommandReward fewer(sh("wrong_count.sh", "fewer"));
  msg = expect_failure(fewer, samples(2), 5.0);
  EXPECT_NE(msg.find("batch 1: expected 2 reward lines, got 1 before the checker exited with "
                     "status 0"),
            std::string::npos)
      << msg;
}

size_t open_fds() {
  return size_t(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                              std::filesystem::directory_iterator()));
}

TEST(CommandRewardTest, FailuresAndRestartsLeakNoFileDescriptors) {
  const size_t before = open_fds();
  {
    CommandReward r(sh("crash.sh", "exit"));
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(r.score(samples(1)), (std::vector<double>{1}));  // a fresh checker each time
      expect_failure(r, samples(1), 5.0);
    }
    EXPECT_THROW(CommandReward({.argv = {"/nonexistent/checker"}}), ValueError);
  }
  EXPECT_EQ(open_fds(), before);
}

TEST(CommandRewardTest, BadOptionsFailAtConstruction) {
  EXPECT_THROW(CommandReward({}), ValueError);
  EXPECT_THROW(CommandReward({.argv = {"/nonexistent/checker"}}), ValueError);
  EXPECT_THROW(CommandReward({.argv = {"/bin/sh"}, .timeout_s = 0}), ValueError);
  EXPECT_THROW(CommandReward({.argv = {"a", "b"}, .shell = true}), ValueError);
  try {
    CommandReward r(
        {.argv = {"/bin/sh", checker("score.sh")}, .stderr_path = "/nonexistent/dir/checker.log"});
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("stderr_path '/nonexistent/dir/checker.log'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace loom::rlhf

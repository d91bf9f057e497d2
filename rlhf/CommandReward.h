// A reward source that runs a user's checker program (unit tests, a math verifier, a sandbox)
// and talks JSONL to it over its stdin/stdout, one line per sample each way, with a per-batch
// timeout. Every way a checker can misbehave is a DataError, never a hang (see the class).
//
//   CommandReward r({.argv = {"python3", "check.py"}, .timeout_s = 30});
//   std::vector<double> rewards = r.score(samples);
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "rlhf/RewardSources.h"

namespace loom::rlhf {

// The command is started once (posix_spawn, own process group, no shell unless asked) and kept
// running; each batch sends one line per sample on its stdin,
//   {"prompt": "...", "response": "...", <the prompt record's other fields>}
// and reads one line per sample, in order, from its stdout: {"reward": <finite number>}.
// Its stderr is inherited (forwarded to the trainer's) or appended to a file, never a pipe we
// could forget to drain. Writing and reading are interleaved through poll(), so batches larger
// than a pipe buffer cannot deadlock.
//
// A checker that exits or is killed, answers past the batch timeout, prints malformed JSON, a
// missing or non-finite reward, or too few / too many lines is a loom::DataError naming the
// command, the batch number (1-based) and the offending line. The checker's process group is
// then killed (SIGKILL) and reaped (no zombie); the next score() starts a fresh one.
// NB: a surplus line is caught when it arrives with the batch's last answer or before the next
// batch is sent; one that arrives later than that would be taken as the next batch's first
// answer, so a checker must answer exactly one line per input line.
class CommandReward : public RewardSource {
 public:
  // Starts the command. ValueError for empty argv, a non-positive timeout, or a command that
  // cannot be started (not found, not executable, unwritable stderr_path).
  explicit CommandReward(CommandRewardOptions o);
  // Closes the checker's stdin, gives it 2 s to exit, then kills its process group; reaps it.
  ~CommandReward() override;
  CommandReward(const CommandReward&) = delete;
  CommandReward& operator=(const CommandReward&) = delete;

  std::vector<double> score(const std::vector<RewardSample>& batch) override;
  std::string describe() const override;  // "command 'python3 check.py'"
  pid_t pid() const { return pid_; }      // the running checker, -1 after a failure

 private:
  void start();
  // Kills the process group, reaps the checker and returns how it ended ("exited with status 3",
  // "killed by signal 15 (Terminated)"); `grace_s` lets it exit on its own first.
  std::string stop(double grace_s);
  [[noreturn]] void fail(int64_t batch, const std::string& what);
  void check_no_stale_output(int64_t batch);
  std::vector<std::string> exchange(int64_t batch, const std::string& input, size_t n_lines);

  CommandRewardOptions o_;
  std::string name_;
  pid_t pid_ = -1;
  int in_fd_ = -1;   // our end of the checker's stdin (a socket: writes never raise SIGPIPE)
  int out_fd_ = -1;  // our end of the checker's stdout (a pipe)
  int64_t batches_ = 0;
};

}  // namespace loom::rlhf

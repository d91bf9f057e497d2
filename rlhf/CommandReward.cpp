// The external-command reward source (see CommandReward.h): posix_spawn with the checker in its
// own process group, a socket for its stdin (send with MSG_NOSIGNAL, so a dead checker gives
// EPIPE instead of killing the trainer with SIGPIPE), a pipe for its stdout, and one poll() loop
// per batch that writes and reads until every answer is in or the deadline passes.
#include "rlhf/CommandReward.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/util/Check.h"
#include "core/util/Logging.h"

extern char** environ;

namespace loom::rlhf {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxLineBytes = size_t(1) << 20;

std::string excerpt(const std::string& s) { return s.size() > 200 ? s.substr(0, 200) + "..." : s; }

std::string status_text(int st) {
  if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) {
    return "was killed by signal " + std::to_string(WTERMSIG(st)) + " (" + strsignal(WTERMSIG(st)) +
           ")";
  }
  return "ended with wait status " + std::to_string(st);
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

// One JSONL line for the checker. Invalid UTF-8 in the texts becomes U+FFFD.
std::string input_line(const RewardSample& s) {
  nlohmann::ordered_json j;
  j["prompt"] = s.prompt;
  j["response"] = s.response;
  for (const auto& [key, text] : s.fields) {
    if (key == "prompt" || key == "response") continue;
    nlohmann::json v = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    LOOM_CHECK(!v.is_discarded(), "command reward: expected field '", key,
               "' of the sample to hold JSON text, got '", excerpt(text), "'");
    j[key] = v;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// The reward in one output line; false (and *why) if the line is not {"reward": <finite>}.
bool parse_reward(const std::string& line, double* reward, std::string* why) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    const bool nan =
        line.find("NaN") != std::string::npos || line.find("Infinity") != std::string::npos;
    *why = nan ? "a non-finite reward: NaN and Infinity are not JSON" : "not valid JSON";
    return false;
  }
  if (!j.is_object()) {
    *why = "not a JSON object";
    return false;
  }
  auto it = j.find("reward");
  if (it == j.end() || !it->is_number()) {
    *why = "no numeric \"reward\" field";
    return false;
  }
  *reward = it->get<double>();
  if (!std::isfinite(*reward)) {
    *why = "a non-finite reward";
    return false;
  }
  return true;
}

}  // namespace

CommandReward::CommandReward(CommandRewardOptions o) : o_(std::move(o)) {
  LOOM_CHECK(!o_.argv.empty() && !o_.argv[0].empty(),
             "command reward: expected a command in argv, got none");
  LOOM_CHECK(!o_.shell || o_.argv.size() == 1,
             "command reward: expected one command line with shell = true, got ", o_.argv.size(),
             " arguments");
  LOOM_CHECK(o_.timeout_s > 0 && std::isfinite(o_.timeout_s),
             "command reward: expected timeout_s > 0, got ", o_.timeout_s);
  for (const std::string& a : o_.argv) name_ += (name_.empty() ? "" : " ") + a;
  start();
}

CommandReward::~CommandReward() {
  try {
    stop(/*grace_s=*/2.0);
  } catch (const std::exception& e) {  // destructors log, they do not throw (STYLE.md 6)
    LOG(WARN) << describe() << ": stopping the checker failed: " << e.what();
  }
}

std::string CommandReward::describe() const { return "reward command '" + name_ + "'"; }

void CommandReward::start() {
  int in_sv[2], out_p[2];
  LOOM_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sv) == 0, describe(),
             ": expected to create its stdin socket, got ", std::strerror(errno));
  if (::pipe2(out_p, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(in_sv[0]);
    ::close(in_sv[1]);
    LOOM_CHECK(false, describe(), ": expected to create its stdout pipe, got ", std::strerror(err));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_sv[1], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, out_p[1], STDOUT_FILENO);
  if (!o_.stderr_path.empty()) {
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, o_.stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: a timeout kills its children too
  sigset_t none, defaults;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigemptyset(&defaults);  // ignored dispositions survive exec: reset the usual ones
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigdefault(&attr, &defaults);
  std::vector<std::string> args =
      o_.shell ? std::vector<std::string>{"/bin/sh", "-c", o_.argv[0]} : o_.argv;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = ::posix_spawnp(&pid_, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in_sv[1]);
  ::close(out_p[1]);
  if (rc != 0) {
    ::close(in_sv[0]);
    ::close(out_p[0]);
    pid_ = -1;
    LOOM_CHECK(false, describe(), ": expected the checker to start, got ", std::strerror(rc),
               o_.stderr_path.empty()
                   ? ""
                   : " (or stderr_path '" + o_.stderr_path + "' cannot be opened)");
  }
  in_fd_ = in_sv[0];
  out_fd_ = out_p[0];
  ::fcntl(in_fd_, F_SETFL, ::fcntl(in_fd_, F_GETFL) | O_NONBLOCK);
  ::fcntl(out_fd_, F_SETFL, ::fcntl(out_fd_, F_GETFL) | O_NONBLOCK);
}

std::string CommandReward::stop(double grace_s) {
  if (pid_ < 0) return "was not running";
  close_fd(in_fd_);  // EOF on its stdin asks a well-behaved checker to exit
  const Clock::time_point deadline = after(grace_s);
  for (;;) {  // wait for it to exit on its own, without reaping yet (WNOWAIT)
    siginfo_t info{};
    if (::waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) break;
    if (info.si_pid == pid_ || seconds_left(deadline) <= 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Not reaped yet, so the group id cannot have been reused: kill what is left of the group.
  ::kill(-pid_, SIGKILL);
  int st = 0;
  pid_t r;
  while ((r = ::waitpid(pid_, &st, 0)) < 0 && errno == EINTR) {
  }
  close_fd(out_fd_);
  pid_ = -1;
  return r < 0 ? std::string("ended (its status was collected elsewhere)") : status_text(st);
}

void CommandReward::fail(int64_t batch, const std::string& what) {
  stop(/*grace_s=*/0.0);
  throw DataError(describe() + ": batch " + std::to_string(batch) + ": " + what);
}

void CommandReward::check_no_stale_output(int64_t batch) {
  pollfd p{out_fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return;
  char buf[4096];
  const ssize_t r = ::read(out_fd_, buf, sizeof(buf));
  if (r > 0) {
    fail(batch, "expected no output before the batch is sent, got '" +
                    excerpt(std::string(buf, size_t(r))) + "' (more lines than samples in batch " +
                    std::to_string(batch - 1) + "?)");
  }
  if (r == 0) {
    const std::string how = stop(/*grace_s=*/1.0);
    throw DataError(describe() + ": batch " + std::to_string(batch) +
                    ": expected a running checker, got one that " + how + " after batch " +
                    std::to_string(batch - 1));
  }
}

std::vector<std::string> CommandReward::exchange(int64_t batch, const std::string& input,
                                                 size_t n_lines) {
  const Clock::time_point deadline = after(o_.timeout_s);
  size_t written = 0;
  bool can_write = true;
  std::string pending;
  std::vector<std::string> lines;
  const std::string want = "expected " + std::to_string(n_lines) + " reward lines";
  while (lines.size() < n_lines) {
    const double left = seconds_left(deadline);
    if (left <= 0) {
      fail(batch, want + " within timeout_s = " + detail::str_cat(o_.timeout_s) + " s, got " +
                      std::to_string(lines.size()) +
                      "; killed the checker (hint: raise timeout_s)");
    }
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {in_fd_, POLLOUT, 0}};
    const bool writing = can_write && written < input.size();
    const int rc = ::poll(fds, writing ? 2 : 1, int(std::ceil(left * 1000)));
    if (rc < 0 && errno != EINTR) fail(batch, std::string("poll failed: ") + std::strerror(errno));
    if (rc <= 0) continue;
    if (writing && fds[1].revents != 0) {
      const ssize_t w = ::send(in_fd_, input.data() + written, input.size() - written,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) written += size_t(w);
      // EPIPE / ECONNRESET: it closed its stdin (or exited); its stdout tells the rest.
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) can_write = false;
    }
    if (fds[0].revents == 0) continue;
    char buf[65536];
    const ssize_t r = ::read(out_fd_, buf, sizeof(buf));
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (r < 0) fail(batch, std::string("reading its stdout failed: ") + std::strerror(errno));
    if (r == 0) {
      const std::string how = stop(std::min(left, 1.0));
      throw DataError(describe() + ": batch " + std::to_string(batch) + ": " + want + ", got " +
                      std::to_string(lines.size()) + " before the checker " + how);
    }
    pending.append(buf, size_t(r));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
      lines.push_back(pending.substr(0, nl));
    }
    if (pending.size() > kMaxLineBytes) {
      fail(batch, "expected reward lines under 1 MiB, got line " +
                      std::to_string(lines.size() + 1) + " longer");
    }
  }
  if (lines.size() > n_lines || !pending.empty() || written < input.size()) {
    const std::string extra = lines.size() > n_lines ? lines[n_lines] : pending;
    fail(batch, want + ", got more: line " + std::to_string(n_lines + 1) + " is '" +
                    excerpt(extra) + "'" +
                    (written < input.size() ? " (it answered before reading all samples)" : ""));
  }
  return lines;
}

std::vector<double> CommandReward::score(const std::vector<RewardSample>& batch) {
  const int64_t b = ++batches_;
  if (batch.empty()) return {};
  if (pid_ < 0) start();
  check_no_stale_output(b);
  std::string input;
  for (const RewardSample& s : batch) input += input_line(s);
  std::vector<std::string> lines = exchange(b, input, batch.size());
  std::vector<double> rewards(batch.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string line = lines[i];
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string why;
    if (!parse_reward(line, &rewards[i], &why)) {
      fail(b, "line " + std::to_string(i + 1) + " (sample " + std::to_string(i) +
                  "): expected {\"reward\": <finite number>}, got '" + excerpt(line) + "' (" + why +
                  ")");
    }
  }
  return rewards;
}

}  // namespace loom::rlhf

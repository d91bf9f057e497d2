// `loom launch -n N [--hostfile FILE] CONFIG [--set ...] [--resume R] [--dry-run]`: validates the
// config for N ranks, then runs, in a process group of its own,
//   mpirun -np N [--oversubscribe] [--allow-run-as-root] [--hostfile FILE] --stdin none --tag-output
//          <this loom> train CONFIG [--set ...]
// With --pipeline, CONFIG is a `loom pipeline` file and every rank runs
//   <this loom> pipeline CONFIG [--set ...] [--until STAGE]
// (each stage resolves and validates itself for N ranks when it starts).
// (--oversubscribe when N exceeds this machine's cores and no hostfile is given; --allow-run-as-
// root when run as root). mpirun ends the job when a rank exits non-zero, and a failing rank
// aborts it itself (see run_with_launcher_world). Inside a Slurm allocation without -n it points
// to srun. Preemption: a SIGTERM, SIGINT or SIGUSR1 to `loom launch` reaches every rank as SIGUSR1
// (which mpirun forwards as it is; its own SIGTERM handling would kill the ranks a second later,
// in the middle of their checkpoint), so they finish the step, save and exit 7 (StopSignal.h); a
// second signal sends mpirun SIGTERM. The exit code is mpirun's.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <initializer_list>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/util/Check.h"
#include "core/util/Env.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "config/ConfigLoader.h"
#include "io/HfSource.h"

namespace loom::cli {

namespace {
std::string self_exe() {
  std::vector<char> buf(4096, '\0');
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), size_t(n)) : std::string("loom");
}

volatile pid_t g_mpirun = 0;
volatile std::sig_atomic_t g_signals = 0;

// The launcher's handler: the first stop signal asks the ranks to stop gracefully, the next one
// ends mpirun's job.
void forward_to_mpirun(int) {
  if (g_mpirun <= 0) return;
  ::kill(g_mpirun, g_signals == 0 ? SIGUSR1 : SIGTERM);
  g_signals = 1;
}

// Runs cmd as a child in its own process group, forwarding stop signals; returns its exit code
// (128 + signal when a signal ended it). Throws `cannot_run` when the program cannot be run.
int run_forwarding(std::vector<std::string> cmd, const std::string& cannot_run) {
  std::vector<char*> argv;
  for (std::string& w : cmd) argv.push_back(w.data());
  argv.push_back(nullptr);
  int fds[2];
  LOOM_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "loom launch: pipe: ", std::strerror(errno));
  const pid_t pid = ::fork();
  LOOM_CHECK(pid >= 0, "loom launch: fork: ", std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    ::setpgid(0, 0);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    const ssize_t ignored = ::write(fds[1], &err, sizeof(err));
    (void)ignored;
    ::_exit(127);
  }
  ::close(fds[1]);
  g_mpirun = pid;
  struct sigaction sa {};
  sa.sa_handler = forward_to_mpirun;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) ::sigaction(sig, &sa, nullptr);
  int err = 0;
  ssize_t got;
  while ((got = ::read(fds[0], &err, sizeof(err))) < 0 && errno == EINTR) {
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == ssize_t(sizeof(err)))
    throw ConfigError(detail::str_cat(cannot_run, std::strerror(err), "; hint: install OpenMPI "
                                      "(mpirun on PATH) or set ", env::kMpirun));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string shell_quote(const std::string& s) {
  if (s.find_first_of(" '\"\\$`") == std::string::npos && !s.empty()) return s;
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q.append("'\\''");
    else
      q.push_back(c);
  }
  return q + "'";
}

std::vector<std::string> mpirun_command(const Verb& a, int64_t n) {
  std::vector<std::string> cmd = {env::get_string(env::kMpirun, "mpirun"), "-np",
                                  std::to_string(n)};
  if (!a.has("hostfile") && n > int64_t(std::thread::hardware_concurrency()))
    cmd.push_back("--oversubscribe");
  if (::geteuid() == 0) cmd.push_back("--allow-run-as-root");
  if (a.has("hostfile")) {
    cmd.push_back("--hostfile");
    cmd.push_back(a.get("hostfile", ""));
  }
  // mpirun runs in the background process group: it must not read the terminal.
  for (const char* w : {"--stdin", "none", "--tag-output"}) cmd.push_back(w);
  cmd.push_back(self_exe());
  const bool pipeline = a.flag("pipeline");
  cmd.push_back(pipeline ? "pipeline" : "train");
  cmd.push_back(a.positional()[0]);
  for (const std::string& s : a.list("set")) {
    cmd.push_back("--set");
    cmd.push_back(s);
  }
  if (a.has("resume")) cmd.push_back("--resume=" + a.get("resume", ""));
  if (a.has("until")) cmd.push_back("--until=" + a.get("until", ""));
  return cmd;
}

// The largest -n accepted (a sanity bound far above any real job).
constexpr int64_t kMaxRanks = 1 << 20;

int run_launch(const Verb& a) {
  LOOM_CHECK_T(ConfigError, a.positional().size() == 1,
               "loom launch: expected exactly one CONFIG file, got ", a.positional().size(),
               " positional arguments; see `loom launch --help`");
  if (!a.has("n")) {
    LOOM_CHECK_T(ConfigError, !env::is_set(env::kSlurmJobId),
                 "loom launch: inside a Slurm allocation (SLURM_JOB_ID=",
                 env::get_string(env::kSlurmJobId, ""), ") start the ranks with srun instead: "
                 "`srun loom train ", a.positional()[0],
                 " [--set ...]` (loom train recognises srun-started ranks); or pass -n N to use "
                 "mpirun");
    throw ConfigError("loom launch: expected -n N (the number of ranks), got none; see `loom "
                      "launch --help`");
  }
  const int64_t n = a.get_int("n", 0, 1, kMaxRanks);
  LOOM_CHECK_T(ConfigError, a.flag("pipeline") || !a.has("until"),
               "loom launch: --until names a pipeline stage; expected --pipeline with it");
  LOOM_CHECK_T(ConfigError, !a.flag("pipeline") || !a.has("resume"),
               "loom launch: --resume is for a single config; a pipeline resumes by itself");
  // Fail here, once, rather than on every rank (or in mpirun's words, with exit code 1). A dry
  // run may show a command for another machine, whose hostfile is not here.
  if (a.has("hostfile") && !a.flag("dry-run")) {
    const std::string hf = a.get("hostfile", "");
    std::error_code ec;
    LOOM_CHECK_T(ConfigError, std::filesystem::is_regular_file(hf, ec),
                 "loom launch: --hostfile \"", hf, "\": expected a readable OpenMPI hostfile, got ",
                 std::filesystem::exists(hf, ec) ? "something that is not a file" : "no such file");
  }
  std::vector<std::string> sets = a.list("set");
  if (!a.flag("pipeline")) config::resolve(a.positional()[0], sets, int(n), io::model_from_init);

  std::vector<std::string> cmd = mpirun_command(a, n);
  std::string line;
  for (const std::string& w : cmd) {
    if (!line.empty()) line.push_back(' ');
    line.append(shell_quote(w));
  }
  std::fprintf(stderr, "loom launch: %s\n", line.c_str());
  std::fflush(stderr);
  if (a.flag("dry-run")) return 0;
  return run_forwarding(cmd, "loom launch: cannot run " + cmd[0] + ": ");
}

}  // namespace

void add_launch(Cli& cli) {
  Verb& v = cli.verb(cli.root(), "launch", "run a multi-process job through mpirun (or srun)",
                     run_launch);
  v.positionals("CONFIG", "the run config (or with --pipeline, the pipeline file)")
      .value("n", "N", "number of ranks (also -np N)", "-n")
      .value("hostfile", "FILE", "OpenMPI hostfile for a multi-node job")
      .list("set", "FIELD=VALUE", "override a config field (passed to every rank)")
      .value("resume", "R", "auto, none, or a checkpoint dir")
      .boolean("dry-run", "print the mpirun command instead of running it")
      .boolean("pipeline", "CONFIG is a `loom pipeline` file: run its stages on N ranks")
      .value("until", "STAGE", "with --pipeline: stop after this stage");
  cli.respell(v, "-np", "-n");  // mpirun's spelling; CLI11 would read "-np" as "-n p"
}

}  // namespace loom::cli

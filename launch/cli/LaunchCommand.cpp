// `loom launch -n N [--hostfile FILE] CONFIG [--set ...] [--resume R] [--dry-run]`: validates the
// config for N ranks, then replaces this process with
//   mpirun -np N [--oversubscribe] [--allow-run-as-root] [--hostfile FILE] --tag-output
//          <this loom> train CONFIG [--set ...]
// With --pipeline, CONFIG is a `loom pipeline` file and every rank runs
//   <this loom> pipeline CONFIG [--set ...] [--until STAGE]
// (each stage resolves and validates itself for N ranks when it starts).
// (--oversubscribe when N exceeds this machine's cores and no hostfile is given; --allow-run-as-
// root when run as root). mpirun ends the job when a rank exits non-zero, and a failing rank
// aborts it itself (see cmd_train). Inside a Slurm allocation without -n it points to srun.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/util/Check.h"
#include "core/util/Env.h"
#include "launch/cli/Args.h"
#include "launch/cli/Commands.h"
#include "config/ConfigLoader.h"

namespace loom::cli {

namespace {
std::string self_exe(const char* argv0) {
  std::vector<char> buf(4096, '\0');
  ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), size_t(n)) : std::string(argv0);
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

std::vector<std::string> mpirun_command(const Args& a, int64_t n, const char* argv0) {
  std::vector<std::string> cmd = {env::get_string(env::kMpirun, "mpirun"), "-np",
                                  std::to_string(n)};
  if (!a.has("hostfile") && n > int64_t(std::thread::hardware_concurrency()))
    cmd.push_back("--oversubscribe");
  if (::geteuid() == 0) cmd.push_back("--allow-run-as-root");
  if (a.has("hostfile")) {
    cmd.push_back("--hostfile");
    cmd.push_back(a.get("hostfile", ""));
  }
  cmd.push_back("--tag-output");
  cmd.push_back(self_exe(argv0));
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
}  // namespace

int cmd_launch(int argc, char** argv) {
  // mpirun spells the rank count -n / -np; Args knows only --long flags.
  std::vector<std::string> words(argv, argv + argc);
  for (size_t i = 2; i < words.size(); ++i)
    if (words[i] == "-n" || words[i] == "-np") words[i] = "--n";
  std::vector<char*> ptrs;
  for (std::string& w : words) ptrs.push_back(w.data());
  Args a("launch", int(ptrs.size()), ptrs.data(), 2,
         {{"n", Kind::Value, "number of ranks (also -n N)"},
          {"hostfile", Kind::Value, "OpenMPI hostfile for a multi-node job"},
          {"set", Kind::List, "override a config field (passed to every rank)"},
          {"resume", Kind::Value, "auto, none, or a checkpoint dir"},
          {"dry-run", Kind::Bool, "print the mpirun command instead of running it"},
          {"pipeline", Kind::Bool, "CONFIG is a `loom pipeline` file: run its stages on N ranks"},
          {"until", Kind::Value, "with --pipeline: stop after this stage"}});
  LOOM_CHECK_T(ConfigError, a.positional().size() == 1,
               "loom launch: expected exactly one CONFIG file, got ", a.positional().size(),
               " positional arguments\n", a.usage());
  if (!a.has("n")) {
    LOOM_CHECK_T(ConfigError, !env::is_set(env::kSlurmJobId),
                 "loom launch: inside a Slurm allocation (SLURM_JOB_ID=",
                 env::get_string(env::kSlurmJobId, ""), ") start the ranks with srun instead: "
                 "`srun loom train ", a.positional()[0],
                 " [--set ...]` (loom train recognises srun-started ranks); or pass -n N to use "
                 "mpirun");
    throw ConfigError("loom launch: expected -n N (the number of ranks), got none\n" + a.usage());
  }
  const int64_t n = a.get_int("n", 0);
  LOOM_CHECK_T(ConfigError, n >= 1, "loom launch: expected -n >= 1, got ", n);
  LOOM_CHECK_T(ConfigError, a.flag("pipeline") || !a.has("until"),
               "loom launch: --until names a pipeline stage; expected --pipeline with it");
  LOOM_CHECK_T(ConfigError, !a.flag("pipeline") || !a.has("resume"),
               "loom launch: --resume is for a single config; a pipeline resumes by itself");
  // Fail here, once, rather than on every rank.
  std::vector<std::string> sets = a.list("set");
  if (!a.flag("pipeline")) config::resolve(a.positional()[0], sets, int(n));

  std::vector<std::string> cmd = mpirun_command(a, n, argv[0]);
  std::string line;
  for (const std::string& w : cmd) {
    if (!line.empty()) line.push_back(' ');
    line.append(shell_quote(w));
  }
  std::fprintf(stderr, "loom launch: %s\n", line.c_str());
  std::fflush(stderr);
  if (a.flag("dry-run")) return 0;
  std::vector<char*> exec_argv;
  for (std::string& w : cmd) exec_argv.push_back(w.data());
  exec_argv.push_back(nullptr);
  ::execvp(exec_argv[0], exec_argv.data());
  throw ConfigError(detail::str_cat("loom launch: cannot run ", cmd[0], ": ",
                                    std::strerror(errno),
                                    "; hint: install OpenMPI (mpirun on PATH) or set ",
                                    env::kMpirun));
}

}  // namespace loom::cli

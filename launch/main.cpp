// The `loom` command line: train, pipeline, launch, preprocess, tokenizer, generate, eval,
// convert, bench, plan (launch/cli/Commands.h). This is the only place that calls exit(): every
// exception maps to a documented exit code and a labelled message (launch/cli/ErrorReport.h,
// STYLE.md section 6): 1 error, 2 config, 3 checkpoint, 4 comm timeout, 5 OOM, 6 non-finite.
#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/util/Check.h"
#include "core/util/Env.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "launch/cli/ErrorReport.h"

namespace {

std::string version_line() {
  return loom::detail::str_cat(
      "loom ", LOOM_VERSION, " (cpu threads ", loom::cpu::num_threads(), ", cuda backend ",
      loom::cuda_backend() != nullptr ? "available" : "not available", ")");
}

int run(int argc, char** argv) {
  loom::cli::Cli cli(version_line);
  loom::cli::add_all_commands(cli);
  return cli.run(argc, argv);
}

}  // namespace

// libgomp reads OMP_WAIT_POLICY once, when it loads: default it to passive by re-executing once
// (see core/util/Env.h). Returns only if the variable was already set or exec failed.
void default_to_passive_omp_wait(char** argv) {
  if (loom::env::is_set(loom::env::kOmpWaitPolicy)) return;
  ::setenv(loom::env::kOmpWaitPolicy, "passive", 1);
  ::execv("/proc/self/exe", argv);  // on failure, carry on with libgomp's default
}

int main(int argc, char** argv) {
  default_to_passive_omp_wait(argv);
  // No HDF5 teardown at exit: after a write failed (a full disk), H5Fclose fails and leaves the
  // file open, and libhdf5 1.10's atexit handler then crashes closing it again (SIGSEGV instead of
  // the error's exit code; drills, tests/e2e/CliErrorsTest). Every file is closed explicitly.
  H5dont_atexit();
  try {
    return run(argc, argv);
  } catch (...) {
    const loom::cli::ErrorReport r = loom::cli::report_current_exception();
    std::fprintf(stderr, "loom: error: %s\n", r.message.c_str());
    return r.exit_code;
  }
}

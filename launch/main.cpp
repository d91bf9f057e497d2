// The `loom` command line. Verbs arrive with their issues (train, launch, preprocess, tokenizer,
// generate, eval, convert, bench, plan). This is the only place that calls exit(): exceptions map
// to documented exit codes (STYLE.md section 6).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/util/Check.h"
#include "core/util/Env.h"
#include "launch/cli/Commands.h"

namespace {

constexpr const char* kUsage = R"(loom - train GPT-style language models (pretrain, SFT, reward, PPO, DPO)

usage: loom <command> [options]
       loom --version | --help

commands:
  train       train from a config file
  pipeline    run several training stages in order (pretrain -> sft -> reward -> ppo)
  launch      run a multi-process job through mpirun or srun
  preprocess  tokenize text/JSONL into an HDF5 token dataset
  tokenizer   train or inspect a BPE tokenizer
  generate    sample from a checkpoint
  eval        evaluate a checkpoint
  convert     import/export Hugging Face GPT-2 checkpoints
  bench       time training steps
  plan        print the parallel layout and memory estimate for a config

exit codes: 0 ok, 1 error, 2 config error, 3 checkpoint error, 4 communication timeout,
            5 out of memory, 6 non-finite loss
)";

int exit_code_for(const std::exception& e) {
  if (dynamic_cast<const loom::ConfigError*>(&e)) return 2;
  if (dynamic_cast<const loom::CheckpointError*>(&e)) return 3;
  if (dynamic_cast<const loom::CommTimeout*>(&e)) return 4;
  if (dynamic_cast<const loom::OutOfMemoryError*>(&e)) return 5;
  if (dynamic_cast<const loom::NonFiniteError*>(&e)) return 6;
  return 1;
}

int run(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, stdout);
    return argc < 2 ? 1 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("loom %s (cpu threads %d, cuda backend %s)\n", LOOM_VERSION,
                loom::cpu::num_threads(),
                loom::cuda_backend() != nullptr ? "available" : "not available");
    return 0;
  }
  const std::string verb = argv[1];
  if (verb == "train") return loom::cli::cmd_train(argc, argv);
  if (verb == "plan") return loom::cli::cmd_plan(argc, argv);
  if (verb == "preprocess") return loom::cli::cmd_preprocess(argc, argv);
  if (verb == "tokenizer") return loom::cli::cmd_tokenizer(argc, argv);
  if (verb == "generate") return loom::cli::cmd_generate(argc, argv);
  if (verb == "convert") return loom::cli::cmd_convert(argc, argv);
  if (verb == "bench") return loom::cli::cmd_bench(argc, argv);
  if (verb == "launch") return loom::cli::cmd_launch(argc, argv);
  if (verb == "pipeline") return loom::cli::cmd_pipeline(argc, argv);
  throw loom::ConfigError("loom: unknown command \"" + verb + "\"; run `loom --help` for the list");
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
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loom: error: %s\n", e.what());
    return exit_code_for(e);
  }
}

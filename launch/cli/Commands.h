// The `loom` verbs. Each parses its own flags (launch/cli/Args.h), calls the libraries, and
// returns an exit code; exceptions propagate to main(), which maps them to exit codes.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <string>

namespace loom {
class Communicator;
}

namespace loom::cli {

int cmd_train(int argc, char** argv);       // loom train CONFIG [--set a.b=v]... [--resume R]
int cmd_plan(int argc, char** argv);        // loom plan CONFIG [--set ...] [--world N]
int cmd_preprocess(int argc, char** argv);  // loom preprocess --input F... --output OUT.h5 ...
int cmd_tokenizer(int argc, char** argv);   // loom tokenizer train|encode|decode ...
int cmd_generate(int argc, char** argv);    // loom generate --checkpoint DIR --prompt "..."
int cmd_bench(int argc, char** argv);       // loom bench --model NAME --batch B --seq T ...
int cmd_convert(int argc, char** argv);     // loom convert --from hf DIR --to CKPT (and back)
int cmd_launch(int argc, char** argv);      // loom launch -n N [--hostfile F] CONFIG [--set ...]
int cmd_pipeline(int argc, char** argv);    // loom pipeline PIPELINE [--set [STAGE:]a.b=v]...

// The documented exit code for an error (ConfigError 2, CheckpointError 3, CommTimeout 4, ...).
int exit_code_of(const std::exception& e);

// Runs body(world): world is null for a single process; under mpirun/srun MPI is initialised and
// world spans every rank, and an exception on any rank prints "[rank R of N]" and aborts the job
// with the documented exit code (so no rank waits for a dead one).
int run_with_launcher_world(const std::function<int(std::shared_ptr<Communicator>)>& body);

// `--blas auto|NAME`: re-runs OpenBLAS's kernel dispatch (cpu::set_blas_kernels). In its own file
// because core's ReduceOp and the communicators' ReduceOp cannot meet in one translation unit.
void set_blas_kernels_option(const std::string& name);

}  // namespace loom::cli

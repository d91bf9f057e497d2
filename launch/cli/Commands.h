// The `loom` verbs. Each add_* declares its verb's flags on the command line (launch/cli/Cli.h);
// its body reads them, calls the libraries and returns an exit code. Exceptions propagate to
// main(), which maps them to exit codes (launch/cli/ErrorReport.h).
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace loom {
class Communicator;
}

namespace loom::cli {

class Cli;

void add_train(Cli& cli);       // loom train CONFIG [--set a.b=v]... [--resume R]
void add_pipeline(Cli& cli);    // loom pipeline PIPELINE [--set [STAGE:]a.b=v]... [--until S]
void add_launch(Cli& cli);      // loom launch -n N [--hostfile F] CONFIG [--set ...]
void add_preprocess(Cli& cli);  // loom preprocess --input F... --output OUT.h5 ...
void add_tokenizer(Cli& cli);   // loom tokenizer train|encode|decode ...
void add_generate(Cli& cli);    // loom generate --checkpoint DIR --prompt "..."
void add_eval(Cli& cli);        // loom eval CHECKPOINT|hf:DIR --data FILE.h5
void add_convert(Cli& cli);     // loom convert --from hf DIR --to CKPT (and back)
void add_bench(Cli& cli);       // loom bench --model NAME --batch B --seq T ...
void add_plan(Cli& cli);        // loom plan CONFIG [--set ...] [--world N]

// Every verb above, in the order `loom --help` lists them.
void add_all_commands(Cli& cli);

// Runs body(world): world is null for a single process; under mpirun/srun MPI is initialised and
// world spans every rank, and an exception on any rank prints "[rank R of N]" and aborts the job
// with the documented exit code (so no rank waits for a dead one).
int run_with_launcher_world(const std::function<int(std::shared_ptr<Communicator>)>& body);

// `--blas auto|NAME`: re-runs OpenBLAS's kernel dispatch (cpu::set_blas_kernels). In its own file
// because core's ReduceOp and the communicators' ReduceOp cannot meet in one translation unit.
void set_blas_kernels_option(const std::string& name);

}  // namespace loom::cli

// StopSignal: graceful stop on SIGTERM, SIGINT and SIGUSR1 (Slurm's `--signal`, a time limit, a
// preemption, Ctrl-C). The first such signal only records itself; the trainer sees it at the end
// of the current step, saves a checkpoint and exits with kExitStopped. A second signal ends the
// process at once (exit 128 + signal number). Process-wide; the training commands install it.
//   install_stop_handlers();
//   ... if (stop_signal() != 0) { save(step); return kExitStopped; }
#pragma once

namespace loom {

// Exit code of a run stopped by a signal after its checkpoint was written (resume with
// `--resume auto`).
constexpr int kExitStopped = 7;

// Installs the handlers for SIGTERM, SIGINT and SIGUSR1 (idempotent).
void install_stop_handlers();
// The first stop signal received by this process, or 0.
int stop_signal();
// The signal's name ("SIGTERM", ...), or "signal N".
const char* stop_signal_name(int sig);

}  // namespace loom

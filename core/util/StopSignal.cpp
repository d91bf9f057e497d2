// StopSignal (see StopSignal.h). The handler does only async-signal-safe work: an atomic store,
// write(2) and _exit(2).
#include "core/util/StopSignal.h"

#include <unistd.h>

#include <csignal>
#include <cstring>
#include <initializer_list>

namespace loom {

namespace {

volatile std::sig_atomic_t g_signal = 0;

void write_err(const char* s) {
  const ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

void on_stop_signal(int sig) {
  if (g_signal != 0) {
    write_err("loom: second stop signal: exiting now without a checkpoint\n");
    ::_exit(128 + sig);
  }
  g_signal = sig;
  write_err("loom: stop signal received: finishing this step and saving a checkpoint "
            "(send it again to exit at once)\n");
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // system calls in flight (reads, MPI progress) carry on
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) ::sigaction(sig, &sa, nullptr);
}

int stop_signal() { return int(g_signal); }

const char* stop_signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
  }
}

}  // namespace loom

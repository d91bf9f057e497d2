// The process-level side of a multi-rank run, for launch/ (which must not include <mpi.h>):
// detecting that mpirun / srun started this process, initialising and finalising MPI, and ending
// the whole job when one rank fails (MPI_Abort, so no rank waits for a peer that is gone).
//   if (dist::started_by_launcher()) { dist::MpiSession s; auto world = MpiCommunicator::world(); }
#pragma once

#include <string>

#include "parallel/comm/Communicator.h"

namespace loom::dist {

// True when OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_NTASKS is set (core/util/Env.h).
bool started_by_launcher();

// MPI_Init_thread (MPI_THREAD_SERIALIZED) on construction unless MPI is already initialised;
// MPI_Finalize on destruction if this object initialised it. Communicators must be gone by then.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int world_rank() const { return rank_; }
  int world_size() const { return size_; }

 private:
  bool owns_ = false;
  int rank_ = 0, size_ = 1;
};

// Collective: every rank gathers every rank's config hash (16 hex digits, config::config_hash) and
// throws ConfigError "config hash mismatch (rank N differs)" naming the lowest rank whose hash
// differs from rank 0's, on every rank, before any training collective.
void check_config_hash(Communicator& world, const std::string& hash);

// Collective: `text` of rank `root` on every rank.
std::string broadcast_string(Communicator& comm, const std::string& text, int root);

// MPI_Abort(MPI_COMM_WORLD, code): the launcher then ends every rank. Never returns.
[[noreturn]] void abort_job(int code);

}  // namespace loom::dist

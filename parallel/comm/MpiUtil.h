// MPI plumbing for MpiCommunicator: MPI_CHECK (throws CommError with the call, file:line and MPI's
// error string; needs MPI_ERRORS_RETURN on the communicator) and MpiComm, the RAII owner of an
// MPI_Comm (freed in the destructor unless it is MPI_COMM_WORLD/NULL or MPI is finalized).
// Only parallel/ includes <mpi.h>; core/ never does.
#pragma once

#include <mpi.h>

#include <string>

#include "core/util/Check.h"

namespace loom::mpi {

[[noreturn]] void throw_mpi_error(int code, const char* call, const char* file, int line);

class MpiComm {
 public:
  MpiComm() = default;
  explicit MpiComm(MPI_Comm c) : comm_(c) {}
  ~MpiComm();
  MpiComm(MpiComm&& o) noexcept : comm_(o.comm_) { o.comm_ = MPI_COMM_NULL; }
  MpiComm& operator=(MpiComm&& o) noexcept;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace loom::mpi

#define MPI_CHECK(call)                                                      \
  do {                                                                       \
    int loom_mpi_rc_ = (call);                                               \
    if (loom_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                            \
      ::loom::mpi::throw_mpi_error(loom_mpi_rc_, #call, __FILE__, __LINE__); \
  } while (0)

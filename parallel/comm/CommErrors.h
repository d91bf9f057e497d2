// Error classes of parallel/ beyond the core ones (CommError, CommTimeout live in core/util/Check.h
// because launch/ maps them to exit codes). CollectiveMismatch: ranks called different
// collectives (op, dtype, shape or root) at the same sequence number; raised in debug mode
// (LOOM_COMM_DEBUG=1) on MPI, and always on the Fake communicator.
#pragma once

#include "core/util/Check.h"

namespace loom {

class CollectiveMismatch : public CommError { using CommError::CommError; };

}  // namespace loom

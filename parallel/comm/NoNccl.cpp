// NcclCommunicator for builds without NCCL (no nvcc, or nccl.h / libnccl not found): the class
// exists so callers and tests compile everywhere; available() is false and create() says why.
#include "parallel/comm/NcclCommunicator.h"

namespace loom {

bool NcclCommunicator::available() { return false; }

std::shared_ptr<NcclCommunicator> NcclCommunicator::create(Communicator&, int, CommOptions) {
  throw CommError("NcclCommunicator::create: expected a Loom build with NCCL, got one without "
                  "(CMake did not find nccl.h and libnccl next to the CUDA toolkit)");
}

int NcclCommunicator::local_device(Communicator&) {
  throw CommError("NcclCommunicator::local_device: expected a Loom build with NCCL, got one "
                  "without");
}

}  // namespace loom

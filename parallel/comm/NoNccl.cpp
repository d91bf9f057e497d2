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

// No NcclCommunicator can exist in this build (create() throws), so the members below are never
// reached; they are defined so code that names them links everywhere.
NcclCommunicator::NcclCommunicator(std::shared_ptr<detail::NcclState> state, CommOptions options)
    : Communicator(std::move(options)), state_(std::move(state)) {
  throw CommError("NcclCommunicator: expected a Loom build with NCCL, got one without");
}
NcclCommunicator::~NcclCommunicator() = default;
int NcclCommunicator::rank() const { return 0; }
int NcclCommunicator::size() const { return 1; }
const std::vector<int>& NcclCommunicator::world_ranks() const {
  static const std::vector<int> none;
  return none;
}
int NcclCommunicator::device() const { return -1; }
std::shared_ptr<Communicator> NcclCommunicator::split(int, int, const std::string&) {
  throw CommError("NcclCommunicator::split: expected a Loom build with NCCL, got one without");
}
WorkPtr NcclCommunicator::start(Call) {
  throw CommError("NcclCommunicator: expected a Loom build with NCCL, got one without");
}
void NcclCommunicator::exchange_fingerprints(const CollectiveFingerprint&) {}

}  // namespace loom

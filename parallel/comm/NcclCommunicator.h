// NcclCommunicator: the Communicator over an NCCL communicator, for CUDA tensors, one process per
// GPU. Rank 0 creates the ncclUniqueId and broadcasts it over a bootstrap Communicator (MPI, or a
// one-rank Fake world). Every op runs on the communicator's own stream: it first waits (an event)
// for the compute work queued before it, so later compute overlaps the transfer; Work::wait() polls
// the op's done event and ncclCommGetAsyncError until the deadline, then makes the compute stream
// wait on the event. A missed deadline aborts the NCCL communicator (ncclCommAbort) and throws
// CommTimeout naming op, group and sequence number (NCCL cannot tell which ranks are missing).
// Built when CMake finds NCCL (LOOM_HAVE_NCCL); otherwise create() throws CommError.
//
//   auto world = MpiCommunicator::world();
//   auto nccl = NcclCommunicator::create(*world, NcclCommunicator::local_device(*world));
#pragma once

#include <memory>

#include "parallel/comm/Communicator.h"

namespace loom {

namespace detail {
struct NcclState;
}

class NcclCommunicator : public Communicator {
 public:
  // True when Loom was built with NCCL and the CUDA runtime sees at least one device.
  static bool available();
  // Collective over `bootstrap` (every rank calls it, each with its own device). The new
  // communicator has bootstrap's ranks, size and world ranks; options.name defaults to
  // bootstrap's name. Throws CommError when NCCL is unavailable or initialisation fails.
  static std::shared_ptr<NcclCommunicator> create(Communicator& bootstrap, int device,
                                                  CommOptions options = {});
  // The device of this rank: its rank among the bootstrap ranks on the same host (hostname), mod
  // the number of visible devices. Collective over `bootstrap` (a CPU all_gather).
  static int local_device(Communicator& bootstrap);

  NcclCommunicator(std::shared_ptr<detail::NcclState> state, CommOptions options);
  ~NcclCommunicator() override;

  int rank() const override;
  int size() const override;
  const std::vector<int>& world_ranks() const override;
  int device() const;
  // ncclCommSplit; collective over this communicator (an all_gather of (color, key) first, so the
  // new group knows its world ranks; only that all_gather has a deadline).
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name) override;

 protected:
  WorkPtr start(Call call) override;

 private:
  void exchange_fingerprints(const CollectiveFingerprint& fp);
  std::shared_ptr<detail::NcclState> state_;
};

}  // namespace loom

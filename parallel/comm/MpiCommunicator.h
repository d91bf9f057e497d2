// MpiCommunicator: the Communicator over an MPI_Comm, for CPU tensors. Every op is a non-blocking
// MPI call (MPI_Iallreduce, MPI_Iallgather, ...) polled with MPI_Test until the deadline. On a
// timeout it finds the ranks that did not arrive (each stuck rank tells the others which sequence
// number it reached over a private side channel, and answers their probes) and throws CommTimeout
// naming op, seq, group and the missing ranks; the communicator is unusable afterwards and the
// buffers of the unfinished op stay alive until process exit. Debug mode exchanges fingerprints.
//
//   auto world = MpiCommunicator::world();          // after MPI_Init_thread
//   auto tp = world->split(color, key, "tp0");
#pragma once

#include <memory>

#include "parallel/comm/Communicator.h"
#include "parallel/comm/MpiUtil.h"

namespace loom {

namespace detail {
struct MpiState;
}

class MpiCommunicator : public Communicator {
 public:
  // A communicator over a duplicate of MPI_COMM_WORLD. MPI must be initialised.
  static std::shared_ptr<MpiCommunicator> world(CommOptions options = {});
  // Takes ownership of `comm`; collective over it (duplicates a side channel).
  MpiCommunicator(mpi::MpiComm comm, CommOptions options);
  ~MpiCommunicator() override;

  int rank() const override;
  int size() const override;
  const std::vector<int>& world_ranks() const override;
  // MPI_Comm_split; blocking, without a deadline (it is not a data collective).
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name) override;
  MPI_Comm comm() const;

 protected:
  WorkPtr start(Call call) override;

 private:
  void exchange_fingerprints(const CollectiveFingerprint& fp);
  void post(class MpiWork& w, const Call& call);
  std::shared_ptr<detail::MpiState> state_;
};

}  // namespace loom

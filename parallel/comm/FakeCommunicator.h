// FakeCommunicator: N ranks as threads of one process sharing memory, so parallel logic can be
// unit-tested without MPI (STYLE.md section 4). Same interface, deadlines and error messages as
// the MPI backend. Reductions are always rank-ordered (bitwise equal to MPI's ordered mode), and
// fingerprints are always compared, so a mismatched collective throws CollectiveMismatch even
// without debug mode. Tensors must live on the CPU.
//
//   run_fake_ranks(4, [&](Communicator& c) { Tensor t = ...; c.all_reduce(t); });
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "parallel/comm/Communicator.h"

namespace loom {

namespace detail {
struct FakeWorld;
}

class FakeCommunicator : public Communicator {
 public:
  // One communicator per rank, all joined to one shared in-process world.
  static std::vector<std::shared_ptr<Communicator>> create_world(int n, CommOptions options = {});

  FakeCommunicator(std::shared_ptr<detail::FakeWorld> world, int rank, CommOptions options);
  ~FakeCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override;
  const std::vector<int>& world_ranks() const override;
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name) override;

 protected:
  WorkPtr start(Call call) override;

 private:
  std::shared_ptr<detail::FakeWorld> world_;
  int rank_;
};

// Runs fn(comm) on n threads, one per rank of a fresh Fake world, joins them and rethrows the
// first exception (lowest rank) on the calling thread.
void run_fake_ranks(int n, const std::function<void(Communicator&)>& fn, CommOptions options = {});

}  // namespace loom

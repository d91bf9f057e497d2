// Communicator: the one interface for collectives and point-to-point messages between ranks, with
// backends MPI (CPU tensors), Fake (N ranks as threads in one process, for unit tests) and NCCL.
// Every op returns a Work handle whose wait() enforces the communicator's deadline and rethrows
// stored errors; the blocking methods are wait()-ing convenience wrappers. Collectives are numbered
// per communicator (seq 0, 1, ...) so failures can name exactly which call went wrong.
//
//   auto comms = FakeCommunicator::create_world(4);        // or MpiCommunicator::world()
//   comms[r]->all_reduce(grad);                            // in place, sum
//   auto w = comms[r]->all_gather_async(out, shard); ...; w->wait();
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/ReduceOp.h"
#include "core/tensor/Tensor.h"
#include "parallel/comm/CommErrors.h"

namespace loom {

enum class CommOp : uint8_t { AllReduce, AllGather, ReduceScatter, Broadcast, Barrier, Send, Recv };

const char* comm_op_name(CommOp op);

// What a rank is about to do in collective number `seq`; ranks compare these in debug mode.
// Plain data (fixed size) so it can be exchanged as raw bytes.
struct CollectiveFingerprint {
  static constexpr int kMaxDims = 8;
  int32_t op = 0;      // CommOp
  int32_t reduce = 0;  // ReduceOp (AllReduce / ReduceScatter only)
  int32_t dtype = -1;  // DType, -1 for barrier
  int32_t root = -1;   // broadcast root
  int32_t ndim = 0;
  int32_t pad = 0;
  int64_t seq = 0;
  int64_t numel = 0;
  int64_t shape[kMaxDims] = {};

  static CollectiveFingerprint make(CommOp op, int64_t seq, const Tensor* t, ReduceOp reduce,
                                    int root);
  bool operator==(const CollectiveFingerprint& o) const;
  std::string str() const;  // e.g. "all_reduce(sum) seq=3 f32[4, 8]"
};

// Per-communicator settings. Defaults come from the environment (core/util/Env.h).
struct CommOptions {
  std::string name = "world";
  double timeout_s = default_timeout_s();       // LOOM_COMM_TIMEOUT_S (default 300)
  bool ordered_reduce = default_ordered();      // LOOM_DETERMINISTIC
  bool debug = default_debug();                 // LOOM_COMM_DEBUG

  static double default_timeout_s();
  static bool default_ordered();
  static bool default_debug();
};

// Handle to one in-flight op. wait() blocks until the op finished (results are visible in the
// output tensor only after wait() returns) or throws CommTimeout at the deadline; a stored error
// is rethrown by every later wait(). Tensors passed to an op must stay untouched until then.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool is_completed() = 0;  // non-blocking test; true also after an error
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  explicit Communicator(CommOptions options) : options_(std::move(options)) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  const std::string& name() const { return options_.name; }
  // World rank of every member, indexed by group rank (used in error messages).
  virtual const std::vector<int>& world_ranks() const = 0;
  std::string describe() const;  // "group 'tp0' (world ranks [0, 1])"

  double timeout_s() const { return options_.timeout_s; }
  void set_timeout_s(double s);
  // Ordered mode: float sums are computed as ((x_0 + x_1) + x_2) + ... in rank order on every
  // rank, bitwise equal to a single-process rank-ordered reference. bf16/f16/bool reductions are
  // always ordered (f32 accumulation for bf16/f16, rounded once); integer sums are exact anyway.
  bool ordered_reduce() const { return options_.ordered_reduce; }
  void set_ordered_reduce(bool on) { options_.ordered_reduce = on; }
  bool debug() const { return options_.debug; }
  void set_debug(bool on) { options_.debug = on; }
  int64_t next_seq() const { return seq_; }

  // ---- async ops (tensors: contiguous, CPU for MPI/Fake, any dtype) -------------------------
  WorkPtr all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum);  // in place
  // out (size*n) <- concatenation of every rank's in (n), in rank order.
  WorkPtr all_gather_async(const Tensor& out, const Tensor& in);
  // out (n) <- reduction over ranks of in[rank*n : (rank+1)*n]; in has size*n elements.
  WorkPtr reduce_scatter_async(const Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum);
  WorkPtr broadcast_async(const Tensor& t, int root);
  WorkPtr send_async(const Tensor& t, int dst, int tag = 0);
  WorkPtr recv_async(const Tensor& t, int src, int tag = 0);  // t must have the sender's size
  WorkPtr barrier_async();

  // ---- blocking wrappers ---------------------------------------------------------------------
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) { all_reduce_async(t, op)->wait(); }
  void all_gather(const Tensor& out, const Tensor& in) { all_gather_async(out, in)->wait(); }
  void reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum) {
    reduce_scatter_async(out, in, op)->wait();
  }
  void broadcast(const Tensor& t, int root) { broadcast_async(t, root)->wait(); }
  void send(const Tensor& t, int dst, int tag = 0) { send_async(t, dst, tag)->wait(); }
  void recv(const Tensor& t, int src, int tag = 0) { recv_async(t, src, tag)->wait(); }
  void barrier() { barrier_async()->wait(); }

  // Collective over this communicator (like MPI_Comm_split): ranks with the same color form a
  // new communicator ordered by (key, rank). color < 0 returns nullptr (not a member).
  virtual std::shared_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

 protected:
  // One validated call, handed to the backend. For AllReduce/Broadcast/Send/Recv in == out.
  struct Call {
    CommOp op = CommOp::Barrier;
    ReduceOp reduce = ReduceOp::Sum;
    Tensor in, out;
    int peer = -1;  // broadcast root, send destination, recv source
    int tag = 0;
    int64_t seq = -1;  // collective number; p2p ops: -1
    CollectiveFingerprint fp;
  };
  virtual WorkPtr start(Call call) = 0;
  const CommOptions& options() const { return options_; }

 private:
  WorkPtr issue(Call call);
  void check_tensor(const char* op, const char* what, const Tensor& t) const;
  void check_peer(const char* op, int peer) const;

  CommOptions options_;
  int64_t seq_ = 0;
};

// Rank-ordered reduction of `n` contributions: out[i] = parts[0][i] (+|max) parts[1][i] ... in
// order. `out` may alias parts[0]. Float sums accumulate in the element type (f32, f64) or in f32
// (bf16, f16, rounded once); bool Sum and Max are logical or; NaN propagates through Max.
void reduce_ordered(void* out, const void* const* parts, int n, int64_t count, DType dtype,
                    ReduceOp op);

// Formats the "did not complete" message shared by the backends.
// `group` is Communicator::describe(); `missing` says which ranks did not arrive.
std::string timeout_message(const std::string& group, int rank, double timeout_s,
                            const std::string& op_desc, const std::string& missing,
                            const CollectiveFingerprint& fp);
// "CollectiveMismatch: ... seq N ...: rank r called <mine>; rank q called <theirs>; ..."
std::string mismatch_message(const std::string& group, int rank, const CollectiveFingerprint& mine,
                             const std::vector<std::pair<int, CollectiveFingerprint>>& others);
// "[2, 5]"
std::string format_ranks(const std::vector<int>& ranks);

// Shared by the backends' wait loops: one step of polling back-off (yield for the first 64 polls,
// then short sleeps of 20 us up to poll 1024, then long_sleep_us).
void poll_backoff(int& spins, int long_sleep_us);
// Keeps a timed-out Work (and the buffers its pending operation may still write) alive until the
// process ends, so an operation that completes late never writes into freed memory.
void park_forever(WorkPtr w);

}  // namespace loom

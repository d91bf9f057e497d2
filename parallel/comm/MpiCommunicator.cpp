// MPI backend of the Communicator. Layout: MpiState (handles + sequence bookkeeping + the side
// channel that answers "which seq did you reach?" probes), MpiWork (requests + scratch + a
// finish step run after completion, e.g. the rank-ordered local reduction), then the ops.
// NB: after a timeout MPI may still write into the op's buffers, so the Work is parked in a
// process-wide graveyard instead of being freed.
#include "parallel/comm/MpiCommunicator.h"

#include <climits>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace loom {

using detail::str_cat;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kProbeTag = 1;   // side channel: "tell me your seq" (payload: seq asked about)
constexpr int kStatusTag = 2;  // side channel: {seq asked about, last started seq, last op}

Clock::time_point after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

}  // namespace

namespace mpi {

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, buf, &len);
  int rank = -1;
  int init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw CommError(detail::str_cat(call, " failed on world rank ", rank, " at ", file, ":", line,
                                  ": ", std::string(buf, size_t(len))));
}

MpiComm::~MpiComm() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD && !finalized) MPI_Comm_free(&comm_);
}

MpiComm& MpiComm::operator=(MpiComm&& o) noexcept {
  if (this != &o) {
    MpiComm tmp(comm_);
    comm_ = o.comm_;
    o.comm_ = MPI_COMM_NULL;
  }
  return *this;
}

}  // namespace mpi

namespace detail {

struct MpiState {
  mpi::MpiComm comm, side;
  int rank = 0, size = 1;
  std::vector<int> world_ranks;
  std::string group;
  int64_t last_seq = -1;  // last collective this rank started
  CommOp last_op = CommOp::Barrier;
  std::string broken;  // non-empty after a timeout
  struct Pending {
    int64_t msg[3];
    MPI_Request req;
  };
  std::deque<Pending> sends;

  void send_side(int dst, int tag, int64_t a, int64_t b, int64_t c) {
    sends.push_back({{a, b, c}, MPI_REQUEST_NULL});
    Pending& p = sends.back();
    MPI_CHECK(MPI_Isend(p.msg, 3, MPI_INT64_T, dst, tag, side.get(), &p.req));
    while (!sends.empty()) {  // drop completed sends from the front
      int done = 0;
      MPI_CHECK(MPI_Test(&sends.front().req, &done, MPI_STATUS_IGNORE));
      if (!done) break;
      sends.pop_front();
    }
  }

  // Answers every pending probe with this rank's progress.
  void serve_probes() {
    for (;;) {
      int flag = 0;
      MPI_Status st;
      MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kProbeTag, side.get(), &flag, &st));
      if (!flag) return;
      int64_t msg[3];
      MPI_CHECK(MPI_Recv(msg, 3, MPI_INT64_T, st.MPI_SOURCE, kProbeTag, side.get(),
                         MPI_STATUS_IGNORE));
      send_side(st.MPI_SOURCE, kStatusTag, msg[0], last_seq, int64_t(last_op));
    }
  }

  // Which ranks have not reached collective `seq`? Tells everyone our status, probes them, and
  // collects answers for `grace_s` seconds (ranks stuck elsewhere never answer).
  std::string diagnose(int64_t seq, double grace_s) {
    std::vector<int64_t> reached(size_t(size), -2);  // -2: no answer
    reached[size_t(rank)] = last_seq;
    for (int r = 0; r < size; ++r) {
      if (r == rank) continue;
      send_side(r, kStatusTag, seq, last_seq, int64_t(last_op));
      send_side(r, kProbeTag, seq, 0, 0);
    }
    int answered = 1, spins = 0;
    for (auto deadline = after(grace_s); answered < size && Clock::now() < deadline;) {
      serve_probes();
      int flag = 0;
      MPI_Status st;
      MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kStatusTag, side.get(), &flag, &st));
      if (!flag) {
        poll_backoff(spins, 500);
        continue;
      }
      int64_t msg[3];
      MPI_CHECK(MPI_Recv(msg, 3, MPI_INT64_T, st.MPI_SOURCE, kStatusTag, side.get(),
                         MPI_STATUS_IGNORE));
      if (msg[0] != seq || reached[size_t(st.MPI_SOURCE)] != -2) continue;
      reached[size_t(st.MPI_SOURCE)] = msg[1];
      ++answered;
    }
    std::vector<int> missing;
    std::string detail;
    for (int r = 0; r < size; ++r) {
      int64_t s = reached[size_t(r)];
      if (s >= seq) continue;
      missing.push_back(world_ranks[size_t(r)]);
      detail += str_cat("; world rank ", world_ranks[size_t(r)],
                        s == -2 ? ": no answer (not in a call on this group)"
                                : str_cat(": last started seq ", s));
    }
    return "ranks that did not arrive: world ranks " + format_ranks(missing) + detail;
  }
};

}  // namespace detail

// One posted op: requests, scratch buffers, the tensors it uses (kept alive), a finish step.
class MpiWork : public Work, public std::enable_shared_from_this<MpiWork> {
 public:
  MpiWork(std::shared_ptr<detail::MpiState> state, CollectiveFingerprint fp, std::string op_desc,
          double timeout_s, int peer)
      : state_(std::move(state)), fp_(fp), op_desc_(std::move(op_desc)), timeout_s_(timeout_s),
        peer_(peer), deadline_(after(timeout_s)) {}

  void wait() override {
    if (error_) std::rethrow_exception(error_);
    if (done_) return;
    try {
      for (int spins = 0; !test();) {
        state_->serve_probes();
        if (Clock::now() > deadline_) on_timeout();
        poll_backoff(spins, 500);
      }
      if (finish) finish(*this);
      done_ = true;
    } catch (...) {
      error_ = std::current_exception();
      throw;
    }
  }

  bool is_completed() override { return done_ || error_ || test(); }

  std::vector<MPI_Request> reqs;
  std::vector<MPI_Status> statuses;
  std::vector<uint8_t> scratch, scratch2;
  Tensor in, out;
  std::function<void(MpiWork&)> finish;

 private:
  bool test() {
    if (completed_) return true;
    int flag = 0;
    statuses.resize(reqs.size());
    MPI_CHECK(MPI_Testall(int(reqs.size()), reqs.data(), &flag, statuses.data()));
    completed_ = flag != 0;
    return completed_;
  }

  [[noreturn]] void on_timeout() {
    std::string missing;
    if (fp_.seq >= 0) {
      missing = state_->diagnose(fp_.seq, std::min(2.0, std::max(0.2, 0.2 * timeout_s_)));
    } else {
      missing = str_cat("world rank ", state_->world_ranks[size_t(peer_)],
                        " did not post the matching ", CommOp(fp_.op) == CommOp::Send ? "recv" : "send");
    }
    std::string msg =
        timeout_message(state_->group, state_->rank, timeout_s_, op_desc_, missing, fp_);
    state_->broken = msg;
    park_forever(shared_from_this());
    throw CommTimeout(msg);
  }

  std::shared_ptr<detail::MpiState> state_;
  CollectiveFingerprint fp_;
  std::string op_desc_;
  double timeout_s_;
  int peer_;
  Clock::time_point deadline_;
  bool completed_ = false, done_ = false;
  std::exception_ptr error_;
};

std::shared_ptr<MpiCommunicator> MpiCommunicator::world(CommOptions options) {
  int init = 0;
  MPI_Initialized(&init);
  LOOM_CHECK_T(CommError, init, "MpiCommunicator::world: expected MPI to be initialised, got "
               "MPI_Initialized = 0; hint: call MPI_Init_thread first (launch/ does)");
  MPI_Comm dup;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
  return std::make_shared<MpiCommunicator>(mpi::MpiComm(dup), std::move(options));
}

MpiCommunicator::MpiCommunicator(mpi::MpiComm comm, CommOptions options)
    : Communicator(std::move(options)), state_(std::make_shared<detail::MpiState>()) {
  detail::MpiState& s = *state_;
  s.comm = std::move(comm);
  MPI_CHECK(MPI_Comm_set_errhandler(s.comm.get(), MPI_ERRORS_RETURN));
  MPI_Comm side;
  MPI_CHECK(MPI_Comm_dup(s.comm.get(), &side));
  s.side = mpi::MpiComm(side);
  MPI_CHECK(MPI_Comm_set_errhandler(side, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(s.comm.get(), &s.rank));
  MPI_CHECK(MPI_Comm_size(s.comm.get(), &s.size));
  int world_rank = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  s.world_ranks.resize(size_t(s.size));
  MPI_CHECK(MPI_Allgather(&world_rank, 1, MPI_INT, s.world_ranks.data(), 1, MPI_INT, side));
  s.group = describe();
}

MpiCommunicator::~MpiCommunicator() = default;

int MpiCommunicator::rank() const { return state_->rank; }
int MpiCommunicator::size() const { return state_->size; }
const std::vector<int>& MpiCommunicator::world_ranks() const { return state_->world_ranks; }
MPI_Comm MpiCommunicator::comm() const { return state_->comm.get(); }

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  MPI_Comm out;
  MPI_CHECK(MPI_Comm_split(comm(), color < 0 ? MPI_UNDEFINED : color, key, &out));
  if (out == MPI_COMM_NULL) return nullptr;
  CommOptions opts = options();
  opts.name = name;
  return std::make_shared<MpiCommunicator>(mpi::MpiComm(out), opts);
}

void MpiCommunicator::exchange_fingerprints(const CollectiveFingerprint& fp) {
  constexpr int kFp = int(sizeof(CollectiveFingerprint));
  auto w = std::make_shared<MpiWork>(state_, fp, str_cat("fingerprint exchange for ",
                                     comm_op_name(CommOp(fp.op)), " (seq ", fp.seq, ")"),
                                     timeout_s(), -1);
  w->scratch.resize(size_t(size()) * kFp);
  w->scratch2.resize(kFp);
  std::memcpy(w->scratch2.data(), &fp, kFp);
  w->reqs.resize(1);
  MPI_CHECK(MPI_Iallgather(w->scratch2.data(), kFp, MPI_BYTE, w->scratch.data(), kFp, MPI_BYTE,
                           state_->side.get(), &w->reqs[0]));
  w->wait();
  std::vector<std::pair<int, CollectiveFingerprint>> others;
  for (int r = 0; r < size(); ++r) {
    CollectiveFingerprint theirs;
    std::memcpy(&theirs, w->scratch.data() + size_t(r) * kFp, kFp);
    if (!(theirs == fp)) others.emplace_back(r, theirs);
  }
  if (!others.empty()) throw CollectiveMismatch(mismatch_message(describe(), rank(), fp, others));
}

WorkPtr MpiCommunicator::start(Call call) {
  LOOM_CHECK_T(CommError, state_->broken.empty(), comm_op_name(call.op), ": ", describe(),
               " is unusable after an earlier failure: ", state_->broken);
  for (const Tensor* t : {&call.in, &call.out})
    LOOM_CHECK(!t->defined() || t->device().is_cpu(), comm_op_name(call.op),
               ": the MPI communicator expects CPU tensors, got a tensor on ", t->device().str());
  if (call.seq >= 0) {
    state_->last_seq = call.seq;
    state_->last_op = call.op;
    if (debug()) exchange_fingerprints(call.fp);
  }
  std::string desc = call.seq >= 0 ? str_cat(comm_op_name(call.op), " (seq ", call.seq, ")")
                                   : str_cat(comm_op_name(call.op), call.op == CommOp::Send
                                             ? " to rank " : " from rank ", call.peer,
                                             " (tag ", call.tag, ")");
  auto w = std::make_shared<MpiWork>(state_, call.fp, desc, timeout_s(), call.peer);
  w->in = call.in;
  w->out = call.out;
  post(*w, call);
  return w;
}

namespace {

// MPI type for the native (non-ordered) reduction path; MPI_DATATYPE_NULL if there is none.
MPI_Datatype native_type(DType dt) {
  switch (dt) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    default: return MPI_DATATYPE_NULL;
  }
}

int checked_count(int64_t n, const char* op) {
  LOOM_CHECK(n <= INT_MAX, op, ": expected at most ", INT_MAX, " elements/bytes per message, got ",
             n, "; hint: split the tensor");
  return int(n);
}

// finish step for the gather-then-reduce paths: `count` elements per rank, blocks `stride` apart.
void reduce_from_scratch(MpiWork& w, int n, int64_t count, size_t stride, ReduceOp op) {
  std::vector<const void*> parts(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) parts[size_t(r)] = w.scratch.data() + size_t(r) * stride;
  reduce_ordered(w.out.raw_data(), parts.data(), n, count, w.out.dtype(), op);
}

// Posts all_reduce / reduce_scatter: MPI's native reduction where allowed, otherwise a byte
// all-gather (all-to-all for reduce_scatter) plus a rank-ordered local reduction in finish.
void post_reduction(MpiWork& w, MPI_Comm c, int n, CommOp op, ReduceOp reduce, bool ordered) {
  const Tensor& t = w.in;
  const Tensor& o = w.out;
  const char* name = comm_op_name(op);
  bool is_int = t.dtype() == DType::I32 || t.dtype() == DType::I64;
  MPI_Datatype native = (is_int || !ordered) ? native_type(t.dtype()) : MPI_DATATYPE_NULL;
  MPI_Op mop = reduce == ReduceOp::Sum ? MPI_SUM : reduce == ReduceOp::Max ? MPI_MAX : MPI_MIN;
  MPI_Request* req = &w.reqs[0];
  if (native != MPI_DATATYPE_NULL) {
    if (op == CommOp::AllReduce) {
      MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), checked_count(t.numel(), name), native,
                               mop, c, req));
    } else {
      MPI_CHECK(MPI_Ireduce_scatter_block(t.raw_data(), o.raw_data(),
                                          checked_count(o.numel(), name), native, mop, c, req));
    }
    return;
  }
  size_t chunk = o.nbytes();  // per-rank block in scratch (all_reduce: out == in)
  w.scratch.resize(chunk * size_t(n));
  int count = checked_count(int64_t(chunk) * n, name) / n;
  if (op == CommOp::AllReduce) {
    MPI_CHECK(MPI_Iallgather(t.raw_data(), count, MPI_BYTE, w.scratch.data(), count, MPI_BYTE, c,
                             req));
  } else {
    MPI_CHECK(MPI_Ialltoall(t.raw_data(), count, MPI_BYTE, w.scratch.data(), count, MPI_BYTE, c,
                            req));
  }
  w.finish = [n, chunk, reduce](MpiWork& x) {
    reduce_from_scratch(x, n, x.out.numel(), chunk, reduce);
  };
}

}  // namespace

void MpiCommunicator::post(MpiWork& w, const Call& call) {
  MPI_Comm c = comm();
  int n = size();
  const Tensor& t = call.in;
  w.reqs.assign(1, MPI_REQUEST_NULL);
  MPI_Request* req = &w.reqs[0];
  const char* name = comm_op_name(call.op);
  switch (call.op) {
    case CommOp::AllReduce:
    case CommOp::ReduceScatter:
      post_reduction(w, c, n, call.op, call.reduce, ordered_reduce());
      break;
    case CommOp::AllGather: {
      int nb = checked_count(int64_t(call.out.nbytes()), name) / n;
      MPI_CHECK(MPI_Iallgather(t.raw_data(), nb, MPI_BYTE, call.out.raw_data(), nb, MPI_BYTE, c,
                               req));
      break;
    }
    case CommOp::Broadcast:
      MPI_CHECK(MPI_Ibcast(t.raw_data(), checked_count(int64_t(t.nbytes()), name), MPI_BYTE,
                           call.peer, c, req));
      break;
    case CommOp::Barrier: MPI_CHECK(MPI_Ibarrier(c, req)); break;
    case CommOp::Send:
      MPI_CHECK(MPI_Isend(t.raw_data(), checked_count(int64_t(t.nbytes()), name), MPI_BYTE,
                          call.peer, call.tag, c, req));
      break;
    case CommOp::Recv: {
      MPI_CHECK(MPI_Irecv(t.raw_data(), checked_count(int64_t(t.nbytes()), name), MPI_BYTE,
                          call.peer, call.tag, c, req));
      w.finish = [desc = describe(), src = call.peer, tag = call.tag](MpiWork& x) {
        int got = 0;
        MPI_CHECK(MPI_Get_count(&x.statuses[0], MPI_BYTE, &got));
        LOOM_CHECK_T(CommError, size_t(got) == x.out.nbytes(), "recv: expected ", x.out.nbytes(),
                     " bytes from rank ", src, " (tag ", tag, ") on ", desc, ", got ", got);
      };
      break;
    }
  }
  if (call.op != CommOp::Send && call.op != CommOp::Barrier) {
    auto prev = std::move(w.finish);
    w.finish = [prev](MpiWork& x) {
      if (prev) prev(x);
      x.out.bump_version();
    };
  }
}

}  // namespace loom

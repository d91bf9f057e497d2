// NCCL backend of the Communicator. Layout: NcclState (communicator, device, comm stream), NcclWork
// (ready/done events, the tensors it keeps alive, a finish step run on the compute stream), then
// the ops. Stream protocol per op: event on the compute stream -> comm stream waits -> NCCL call on
// the comm stream -> done event; wait() polls done, then the compute stream waits on it. Sums that
// must be rank-ordered (bf16/f16 always, f32/f64 in ordered mode) gather every rank's part and add
// them in rank order on the compute stream, as reduce_ordered() does on the CPU.
// NB: core/backend/Backend.h is not included: its loom::ReduceOp clashes with Communicator's.
#include "parallel/comm/NcclCommunicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"

namespace loom {
class Backend;
Backend* cuda_backend();  // core/backend/Backend.h: nullptr without a usable device
}  // namespace loom
namespace loom::cuda {
cudaStream_t compute_stream(int device);  // core/backend/cuda/CudaBackend.h
}  // namespace loom::cuda

namespace loom {

using detail::str_cat;

namespace {

using Clock = std::chrono::steady_clock;

void check_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  if (err == cudaSuccess) return;
  cudaGetLastError();
  throw CommError(str_cat("CUDA error ", int(err), " (", cudaGetErrorName(err), ": ",
                          cudaGetErrorString(err), ") in ", expr, " at ", file, ":", line));
}

void check_nccl(ncclResult_t r, ncclComm_t comm, const char* expr, const char* file, int line) {
  if (r == ncclSuccess || r == ncclInProgress) return;
  const char* last = ncclGetLastError(comm);
  throw CommError(str_cat("NCCL error ", int(r), " (", ncclGetErrorString(r), ") in ", expr,
                          " at ", file, ":", line, last && *last ? str_cat("; ", last) : ""));
}

#define LOOM_CUDA_CALL(expr) check_cuda((expr), #expr, __FILE__, __LINE__)
#define LOOM_NCCL_CALL(comm, expr) check_nccl((expr), (comm), #expr, __FILE__, __LINE__)

// Makes `device` current for the guard's lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    LOOM_CUDA_CALL(cudaGetDevice(&prev_));
    if (prev_ != device) LOOM_CUDA_CALL(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(prev_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
};

class Event {
 public:
  Event() { LOOM_CUDA_CALL(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);  // fine while pending: released once it completes
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::Bool: return ncclUint8;  // 0/1 bytes; Sum and Max are both "or" (ncclMax)
  }
  LOOM_INTERNAL_ASSERT(false, "nccl_type: bad dtype");
  return ncclUint8;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

namespace detail {

struct NcclState {
  ncclComm_t comm = nullptr;  // null after an abort
  int device = 0, rank = 0, size = 1;
  std::vector<int> world_ranks;
  std::string group;
  cudaStream_t stream = nullptr;  // the communication stream
  std::string broken;  // non-empty after a timeout or an NCCL error

  NcclState(ncclComm_t c, int dev) : comm(c), device(dev) {
    DeviceGuard g(dev);
    int prio_lo = 0, prio_hi = 0;
    LOOM_CUDA_CALL(cudaDeviceGetStreamPriorityRange(&prio_lo, &prio_hi));
    LOOM_CUDA_CALL(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, prio_hi));
    LOOM_NCCL_CALL(comm, ncclCommUserRank(comm, &rank));
    LOOM_NCCL_CALL(comm, ncclCommCount(comm, &size));
  }
  ~NcclState() {
    cudaSetDevice(device);
    if (comm) ncclCommDestroy(comm);
    if (stream) cudaStreamDestroy(stream);
  }
  NcclState(const NcclState&) = delete;
  NcclState& operator=(const NcclState&) = delete;

  void abort(const std::string& why) {
    if (broken.empty()) broken = why;
    if (comm) ncclCommAbort(comm);
    comm = nullptr;
  }
};

}  // namespace detail

// One op in flight on the comm stream.
class NcclWork : public Work, public std::enable_shared_from_this<NcclWork> {
 public:
  NcclWork(std::shared_ptr<detail::NcclState> state, CollectiveFingerprint fp, std::string desc,
           double timeout_s, int peer)
      : state_(std::move(state)), fp_(fp), desc_(std::move(desc)), timeout_s_(timeout_s),
        peer_(peer),
        deadline_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_s))) {}
  // NB: a Work dropped without wait() still orders the compute stream after the op, so the
  // caching allocator never hands its buffers to a kernel that could run while NCCL uses them.
  ~NcclWork() override {
    if (!recorded_ || done_ || error_ || !state_->comm) return;
    try {
      cudaStreamWaitEvent(cuda::compute_stream(state_->device), done_ev_.get(), 0);
    } catch (...) {  // destructors do not throw; the device state exists once an op ran
    }
  }

  // Compute-stream work queued so far happens before everything enqueue() puts on the comm stream.
  void launch(const std::function<void(ncclComm_t, cudaStream_t)>& enqueue) {
    DeviceGuard g(state_->device);
    LOOM_CUDA_CALL(cudaEventRecord(ready_ev_.get(), cuda::compute_stream(state_->device)));
    LOOM_CUDA_CALL(cudaStreamWaitEvent(state_->stream, ready_ev_.get(), 0));
    enqueue(state_->comm, state_->stream);
    LOOM_CUDA_CALL(cudaEventRecord(done_ev_.get(), state_->stream));
    recorded_ = true;
  }

  void wait() override {
    if (error_) std::rethrow_exception(error_);
    if (done_) return;
    try {
      poll_until_done();
      DeviceGuard g(state_->device);
      LOOM_CUDA_CALL(
          cudaStreamWaitEvent(cuda::compute_stream(state_->device), done_ev_.get(), 0));
      if (finish) finish(*this);
      if (bumps_out && out.defined()) out.bump_version();
      done_ = true;
      scratch = Tensor();
    } catch (...) {
      error_ = std::current_exception();
      throw;
    }
  }

  bool is_completed() override {
    if (done_ || error_) return true;
    return cudaEventQuery(done_ev_.get()) == cudaSuccess;
  }

  Tensor in, out, scratch;
  bool bumps_out = false;
  std::function<void(NcclWork&)> finish;  // after the op, on the compute stream

 private:
  void poll_until_done() {
    for (int spins = 0;;) {
      cudaError_t q = cudaEventQuery(done_ev_.get());
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) LOOM_CUDA_CALL(q);
      check_async_error();
      if (Clock::now() > deadline_) on_timeout();
      poll_backoff(spins, 200);
    }
  }

  void check_async_error() {
    detail::NcclState& s = *state_;
    LOOM_CHECK_T(CommError, s.comm != nullptr, desc_, " on ", s.group,
                 ": the NCCL communicator was aborted after an earlier failure: ", s.broken);
    ncclResult_t async = ncclSuccess;
    LOOM_NCCL_CALL(s.comm, ncclCommGetAsyncError(s.comm, &async));
    if (async == ncclSuccess || async == ncclInProgress) return;
    std::string msg = str_cat("CommError: ", desc_, " on ", s.group, " failed on rank ", s.rank,
                              ": NCCL reported ", ncclGetErrorString(async), " (",
                              ncclGetLastError(s.comm), "); local call: ", fp_.str());
    s.abort(msg);
    park_forever(shared_from_this());
    throw CommError(msg);
  }

  [[noreturn]] void on_timeout() {
    detail::NcclState& s = *state_;
    std::string missing;
    if (fp_.seq >= 0) {
      missing = str_cat("ranks that did not arrive: unknown (NCCL does not report which ranks "
                        "joined the ", comm_op_name(CommOp(fp_.op)), "; look for the rank whose "
                        "log does not show this seq)");
    } else {
      missing = str_cat("presumably world rank ", s.world_ranks[size_t(peer_)],
                        " did not post the matching ",
                        CommOp(fp_.op) == CommOp::Send ? "recv" : "send");
    }
    std::string msg = timeout_message(s.group, s.rank, timeout_s_, desc_, missing, fp_);
    s.abort(msg);  // ends the stuck kernels; the communicator is unusable from now on
    park_forever(shared_from_this());
    throw CommTimeout(msg);
  }

  std::shared_ptr<detail::NcclState> state_;
  CollectiveFingerprint fp_;
  std::string desc_;
  double timeout_s_;
  int peer_;
  Clock::time_point deadline_;
  Event ready_ev_, done_ev_;
  bool recorded_ = false, done_ = false;
  std::exception_ptr error_;
};

// ---- construction --------------------------------------------------------------------------

bool NcclCommunicator::available() { return cuda_backend() != nullptr; }

std::shared_ptr<NcclCommunicator> NcclCommunicator::create(Communicator& bootstrap, int device,
                                                           CommOptions options) {
  LOOM_CHECK_T(CommError, cuda_backend() != nullptr, "NcclCommunicator::create: expected a CUDA "
               "device, got none (cudaGetDeviceCount failed or returned 0)");
  int ndev = 0;
  LOOM_CUDA_CALL(cudaGetDeviceCount(&ndev));
  LOOM_CHECK(device >= 0 && device < ndev, "NcclCommunicator::create: expected a device in [0, ",
             ndev, "), got ", device);
  // One process per GPU: this rank's device becomes the current one for the rest of the process.
  LOOM_CUDA_CALL(cudaSetDevice(device));
  constexpr int64_t kIdWords = (sizeof(ncclUniqueId) + 7) / 8;
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (bootstrap.rank() == 0) LOOM_NCCL_CALL(nullptr, ncclGetUniqueId(&id));
  Tensor id_words = Tensor::zeros({kIdWords}, DType::I64);
  std::memcpy(id_words.raw_data(), &id, sizeof(id));
  bootstrap.broadcast(id_words, 0);
  std::memcpy(&id, id_words.raw_data(), sizeof(id));
  ncclComm_t comm = nullptr;
  LOOM_NCCL_CALL(nullptr, ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
  auto state = std::make_shared<detail::NcclState>(comm, device);
  LOOM_INTERNAL_ASSERT(state->rank == bootstrap.rank() && state->size == bootstrap.size(),
                       "NcclCommunicator::create: NCCL rank/size differ from the bootstrap's");
  state->world_ranks = bootstrap.world_ranks();
  if (options.name == CommOptions{}.name) options.name = bootstrap.name();
  return std::make_shared<NcclCommunicator>(std::move(state), std::move(options));
}

int NcclCommunicator::local_device(Communicator& bootstrap) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  uint64_t mine = fnv1a(host);
  Tensor t = Tensor::empty({1}, DType::I64);
  std::memcpy(t.raw_data(), &mine, sizeof(mine));
  Tensor all = Tensor::empty({bootstrap.size()}, DType::I64);
  bootstrap.all_gather(all, t);
  std::vector<int64_t> hashes = all.to_vector<int64_t>();
  int local = 0;
  for (int r = 0; r < bootstrap.rank(); ++r)
    if (uint64_t(hashes[size_t(r)]) == mine) ++local;
  int ndev = 0;
  cudaError_t err = cudaGetDeviceCount(&ndev);
  if (err != cudaSuccess) cudaGetLastError();
  LOOM_CHECK_T(CommError, err == cudaSuccess && ndev > 0, "NcclCommunicator::local_device: "
               "expected a CUDA device on host ", host, ", got none");
  return local % ndev;
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<detail::NcclState> state, CommOptions options)
    : Communicator(std::move(options)), state_(std::move(state)) {
  state_->group = describe();
}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return state_->rank; }
int NcclCommunicator::size() const { return state_->size; }
const std::vector<int>& NcclCommunicator::world_ranks() const { return state_->world_ranks; }
int NcclCommunicator::device() const { return state_->device; }

std::shared_ptr<Communicator> NcclCommunicator::split(int color, int key, const std::string& name) {
  const int n = size();
  Tensor mine = Tensor::from_vector(
      std::vector<int64_t>{color, key, world_ranks()[size_t(rank())]}, {3},
      Device::cuda(state_->device));
  Tensor all = Tensor::empty({3 * n}, DType::I64, Device::cuda(state_->device));
  all_gather(all, mine);
  std::vector<int64_t> v = all.to_vector<int64_t>();
  std::vector<int> members;  // group ranks of this comm in the new group, ordered by (key, rank)
  for (int r = 0; r < n; ++r)
    if (color >= 0 && v[size_t(3 * r)] == color) members.push_back(r);
  std::stable_sort(members.begin(), members.end(),
                   [&](int a, int b) { return v[size_t(3 * a + 1)] < v[size_t(3 * b + 1)]; });
  DeviceGuard g(state_->device);
  ncclComm_t out = nullptr;
  LOOM_NCCL_CALL(state_->comm, ncclCommSplit(state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color,
                                             key, &out, nullptr));
  if (color < 0) return nullptr;
  auto state = std::make_shared<detail::NcclState>(out, state_->device);
  for (int r : members) state->world_ranks.push_back(int(v[size_t(3 * r + 2)]));
  LOOM_INTERNAL_ASSERT(int(members.size()) == state->size, "NcclCommunicator::split: NCCL made a "
                       "group of ", state->size, " ranks, the all_gather says ", members.size());
  CommOptions opts = options();
  opts.name = name;
  return std::make_shared<NcclCommunicator>(std::move(state), std::move(opts));
}

// ---- ops -----------------------------------------------------------------------------------

namespace {

// out (count) <- sum over r of parts[r] (n, count), added in rank order (f64 in f64, every other
// float type in f32, rounded once), on the compute stream.
void ordered_sum(const Tensor& out, const Tensor& parts) {
  NoGradGuard no_grad;
  DType acc = out.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor total = parts.select(0, 0).to(acc);
  for (int64_t r = 1; r < parts.size(0); ++r) total = add(total, parts.select(0, r).to(acc));
  Tensor flat = out.view({out.numel()});
  flat.copy_(total);
}

bool needs_ordered_sum(DType dt, ReduceOp op, bool ordered) {
  if (op != ReduceOp::Sum) return false;
  if (dt == DType::BF16 || dt == DType::F16) return true;
  return ordered && (dt == DType::F32 || dt == DType::F64);
}

// Posts all_reduce / reduce_scatter: NCCL's own reduction, or a gather of every rank's part plus
// ordered_sum() in the finish step.
void post_reduction(NcclWork& w, CommOp op, ReduceOp reduce, bool ordered, int n, int rank) {
  const Tensor in = w.in, out = w.out;
  const DType dt = in.dtype();
  const ncclDataType_t nt = nccl_type(dt);
  // NB: a Bool sum is an OR, which NCCL computes as a max.
  const ncclRedOp_t nop = reduce == ReduceOp::Min                          ? ncclMin
                          : (reduce == ReduceOp::Max || dt == DType::Bool) ? ncclMax
                                                                           : ncclSum;
  const size_t count = size_t(out.numel());
  if (!needs_ordered_sum(dt, reduce, ordered)) {
    w.launch([&](ncclComm_t c, cudaStream_t s) {
      if (op == CommOp::AllReduce) {
        LOOM_NCCL_CALL(c, ncclAllReduce(in.raw_data(), in.raw_data(), count, nt, nop, c, s));
      } else {
        LOOM_NCCL_CALL(c, ncclReduceScatter(in.raw_data(), out.raw_data(), count, nt, nop, c, s));
      }
    });
    return;
  }
  w.scratch = Tensor::empty({n, int64_t(count)}, dt, in.device());
  const Tensor scratch = w.scratch;
  const size_t chunk = count * dtype_size(dt);
  w.launch([&](ncclComm_t c, cudaStream_t s) {
    if (op == CommOp::AllReduce) {
      LOOM_NCCL_CALL(c, ncclAllGather(in.raw_data(), scratch.raw_data(), count, nt, c, s));
      return;
    }
    // All-to-all: row j of scratch <- rank j's block `rank` of its input.
    auto* src = static_cast<const char*>(in.raw_data());
    auto* dst = static_cast<char*>(scratch.raw_data());
    LOOM_CUDA_CALL(cudaMemcpyAsync(dst + size_t(rank) * chunk, src + size_t(rank) * chunk, chunk,
                                   cudaMemcpyDeviceToDevice, s));
    LOOM_NCCL_CALL(c, ncclGroupStart());
    for (int j = 0; j < n; ++j) {
      if (j == rank) continue;
      LOOM_NCCL_CALL(c, ncclSend(src + size_t(j) * chunk, chunk, ncclUint8, j, c, s));
      LOOM_NCCL_CALL(c, ncclRecv(dst + size_t(j) * chunk, chunk, ncclUint8, j, c, s));
    }
    LOOM_NCCL_CALL(c, ncclGroupEnd());
  });
  w.finish = [](NcclWork& x) { ordered_sum(x.out, x.scratch); };
}

}  // namespace

WorkPtr NcclCommunicator::start(Call call) {
  LOOM_CHECK_T(CommError, state_->broken.empty() && state_->comm, comm_op_name(call.op), ": ",
               describe(), " is unusable after an earlier failure: ", state_->broken);
  for (const Tensor* t : {&call.in, &call.out})
    LOOM_CHECK(!t->defined() || t->device() == Device::cuda(state_->device),
               comm_op_name(call.op), ": the NCCL communicator expects CUDA tensors on cuda:",
               state_->device, ", got a tensor on ", t->device().str());
  if (call.seq >= 0 && debug()) exchange_fingerprints(call.fp);
  std::string desc = call.seq >= 0 ? str_cat(comm_op_name(call.op), " (seq ", call.seq, ")")
                                   : str_cat(comm_op_name(call.op), call.op == CommOp::Send
                                             ? " to rank " : " from rank ", call.peer,
                                             " (tag ", call.tag, ")");
  auto w = std::make_shared<NcclWork>(state_, call.fp, desc, timeout_s(), call.peer);
  w->in = call.in;
  w->out = call.out;
  w->bumps_out = call.op != CommOp::Send && call.op != CommOp::Barrier;
  const Tensor& t = call.in;
  const int peer = call.peer;
  switch (call.op) {
    case CommOp::AllReduce:
    case CommOp::ReduceScatter:
      post_reduction(*w, call.op, call.reduce, ordered_reduce(), size(), rank());
      break;
    case CommOp::AllGather:
      w->launch([&](ncclComm_t c, cudaStream_t s) {
        LOOM_NCCL_CALL(c, ncclAllGather(t.raw_data(), call.out.raw_data(), t.nbytes(), ncclUint8,
                                        c, s));
      });
      break;
    case CommOp::Broadcast:
      w->launch([&](ncclComm_t c, cudaStream_t s) {
        LOOM_NCCL_CALL(c, ncclBroadcast(t.raw_data(), t.raw_data(), t.nbytes(), ncclUint8, peer,
                                        c, s));
      });
      break;
    case CommOp::Barrier:  // NCCL has no barrier: a one-element all-reduce
      w->scratch = Tensor::zeros({1}, DType::F32, Device::cuda(state_->device));
      w->launch([&](ncclComm_t c, cudaStream_t s) {
        void* p = w->scratch.raw_data();
        LOOM_NCCL_CALL(c, ncclAllReduce(p, p, 1, ncclFloat32, ncclSum, c, s));
      });
      break;
    case CommOp::Send:  // NB: NCCL has no tags; messages between two ranks match in posting order
      w->launch([&](ncclComm_t c, cudaStream_t s) {
        LOOM_NCCL_CALL(c, ncclSend(t.raw_data(), t.nbytes(), ncclUint8, peer, c, s));
      });
      break;
    case CommOp::Recv:
      w->launch([&](ncclComm_t c, cudaStream_t s) {
        LOOM_NCCL_CALL(c, ncclRecv(t.raw_data(), t.nbytes(), ncclUint8, peer, c, s));
      });
      break;
  }
  return w;
}

// Debug mode: every rank all-gathers its fingerprint (as 13 int64 words) before the collective.
void NcclCommunicator::exchange_fingerprints(const CollectiveFingerprint& fp) {
  static_assert(sizeof(CollectiveFingerprint) % 8 == 0, "fingerprint must be whole int64 words");
  constexpr int64_t kWords = int64_t(sizeof(CollectiveFingerprint) / 8);
  const Device dev = Device::cuda(state_->device);
  std::vector<int64_t> words(size_t(kWords), 0);
  std::memcpy(words.data(), &fp, sizeof(fp));
  Tensor mine = Tensor::from_vector(words, {kWords}, dev);
  Tensor all = Tensor::empty({size() * kWords}, DType::I64, dev);
  auto w = std::make_shared<NcclWork>(state_, fp, str_cat("fingerprint exchange for ",
                                      comm_op_name(CommOp(fp.op)), " (seq ", fp.seq, ")"),
                                      timeout_s(), -1);
  w->in = mine;
  w->out = all;
  w->launch([&](ncclComm_t c, cudaStream_t s) {
    LOOM_NCCL_CALL(c, ncclAllGather(mine.raw_data(), all.raw_data(), size_t(kWords), ncclInt64,
                                    c, s));
  });
  w->wait();
  std::vector<int64_t> host = all.to_vector<int64_t>();
  std::vector<std::pair<int, CollectiveFingerprint>> others;
  for (int r = 0; r < size(); ++r) {
    CollectiveFingerprint theirs;
    std::memcpy(static_cast<void*>(&theirs), host.data() + size_t(r * kWords), sizeof(theirs));
    if (!(theirs == fp)) others.emplace_back(r, theirs);
  }
  if (!others.empty()) throw CollectiveMismatch(mismatch_message(describe(), rank(), fp, others));
}

}  // namespace loom

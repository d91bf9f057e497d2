// Backend-independent half of the Communicator: argument validation (the same errors on every
// backend), sequence numbering, fingerprints, the rank-ordered reduction used by ordered mode and
// by the Fake backend, and the timeout message format.
#include "parallel/comm/Communicator.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>
#include <sstream>

#include "core/util/Env.h"

namespace loom {

const char* comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::AllReduce: return "all_reduce";
    case CommOp::AllGather: return "all_gather";
    case CommOp::ReduceScatter: return "reduce_scatter";
    case CommOp::Broadcast: return "broadcast";
    case CommOp::Barrier: return "barrier";
    case CommOp::Send: return "send";
    case CommOp::Recv: return "recv";
  }
  return "?";
}


double CommOptions::default_timeout_s() {
  return double(env::get_int(env::kCommTimeoutS, 300, 1, 7 * 24 * 3600));
}
bool CommOptions::default_ordered() { return env::get_bool(env::kDeterministic, false); }
bool CommOptions::default_debug() { return env::get_bool(env::kCommDebug, false); }

CollectiveFingerprint CollectiveFingerprint::make(CommOp op, int64_t seq, const Tensor* t,
                                                  ReduceOp reduce, int root) {
  CollectiveFingerprint fp;
  fp.op = int32_t(op);
  fp.seq = seq;
  fp.root = root;
  if (op == CommOp::AllReduce || op == CommOp::ReduceScatter) fp.reduce = int32_t(reduce);
  if (t) {
    fp.dtype = int32_t(t->dtype());
    fp.ndim = int32_t(t->dim());
    fp.numel = t->numel();
    for (int d = 0; d < fp.ndim && d < kMaxDims; ++d) fp.shape[d] = t->size(d);
  }
  return fp;
}

bool CollectiveFingerprint::operator==(const CollectiveFingerprint& o) const {
  return std::memcmp(this, &o, sizeof(*this)) == 0;
}

std::string CollectiveFingerprint::str() const {
  std::ostringstream os;
  CommOp o = CommOp(op);
  os << comm_op_name(o);
  if (o == CommOp::AllReduce || o == CommOp::ReduceScatter) os << "(" << reduce_op_name(ReduceOp(reduce)) << ")";
  if (o == CommOp::Broadcast) os << "(root=" << root << ")";
  os << " seq=" << seq;
  if (dtype >= 0) {
    os << " " << dtype_name(DType(dtype)) << "[";
    for (int d = 0; d < ndim && d < kMaxDims; ++d) os << (d ? ", " : "") << shape[d];
    if (ndim > kMaxDims) os << ", ...";
    os << "]";
  }
  return os.str();
}

std::string Communicator::describe() const {
  std::ostringstream os;
  os << "group '" << name() << "' (world ranks " << format_ranks(world_ranks()) << ")";
  return os.str();
}

void Communicator::set_timeout_s(double s) {
  LOOM_CHECK(s > 0 && std::isfinite(s), "Communicator::set_timeout_s: expected a positive time, got ",
             s);
  options_.timeout_s = s;
}

void Communicator::check_tensor(const char* op, const char* what, const Tensor& t) const {
  LOOM_CHECK(t.defined(), op, ": expected a defined tensor for ", what, ", got an undefined one");
  LOOM_CHECK(t.is_contiguous(), op, ": expected a contiguous ", what, " tensor, got shape ",
             t.shape(), " strides ", t.strides(), "; hint: call .contiguous()");
}

void Communicator::check_peer(const char* op, int peer) const {
  LOOM_CHECK(peer >= 0 && peer < size(), op, ": expected a rank in [0, ", size(), "), got ", peer);
}

WorkPtr Communicator::issue(Call call) {
  const Tensor* t = call.in.defined() ? &call.in : nullptr;
  bool collective = call.op != CommOp::Send && call.op != CommOp::Recv;
  call.seq = collective ? seq_++ : -1;
  call.fp = CollectiveFingerprint::make(call.op, call.seq, t, call.reduce, call.peer);
  return start(std::move(call));
}

WorkPtr Communicator::all_reduce_async(const Tensor& t, ReduceOp op) {
  check_tensor("all_reduce", "input", t);
  return issue({CommOp::AllReduce, op, t, t, -1, 0, -1, {}});
}

WorkPtr Communicator::all_gather_async(const Tensor& out, const Tensor& in) {
  check_tensor("all_gather", "input", in);
  check_tensor("all_gather", "output", out);
  LOOM_CHECK(out.dtype() == in.dtype(), "all_gather: expected output dtype ", dtype_name(in.dtype()),
             ", got ", dtype_name(out.dtype()));
  LOOM_CHECK(out.numel() == in.numel() * size(), "all_gather: expected output with size*numel = ",
             size(), "*", in.numel(), " elements, got ", out.numel(), " (shape ", out.shape(), ")");
  return issue({CommOp::AllGather, ReduceOp::Sum, in, out, -1, 0, -1, {}});
}

WorkPtr Communicator::reduce_scatter_async(const Tensor& out, const Tensor& in, ReduceOp op) {
  check_tensor("reduce_scatter", "input", in);
  check_tensor("reduce_scatter", "output", out);
  LOOM_CHECK(out.dtype() == in.dtype(), "reduce_scatter: expected output dtype ",
             dtype_name(in.dtype()), ", got ", dtype_name(out.dtype()));
  LOOM_CHECK(in.numel() == out.numel() * size(), "reduce_scatter: expected input with size*numel = ",
             size(), "*", out.numel(), " elements, got ", in.numel(), " (shape ", in.shape(),
             "); hint: pad the input to a multiple of the group size");
  return issue({CommOp::ReduceScatter, op, in, out, -1, 0, -1, {}});
}

WorkPtr Communicator::broadcast_async(const Tensor& t, int root) {
  check_tensor("broadcast", "input", t);
  check_peer("broadcast", root);
  return issue({CommOp::Broadcast, ReduceOp::Sum, t, t, root, 0, -1, {}});
}

WorkPtr Communicator::send_async(const Tensor& t, int dst, int tag) {
  check_tensor("send", "input", t);
  check_peer("send", dst);
  LOOM_CHECK(dst != rank(), "send: expected a destination other than this rank, got ", dst);
  LOOM_CHECK(tag >= 0 && tag < (1 << 15), "send: expected a tag in [0, 32768), got ", tag);
  return issue({CommOp::Send, ReduceOp::Sum, t, t, dst, tag, -1, {}});
}

WorkPtr Communicator::recv_async(const Tensor& t, int src, int tag) {
  check_tensor("recv", "output", t);
  check_peer("recv", src);
  LOOM_CHECK(src != rank(), "recv: expected a source other than this rank, got ", src);
  LOOM_CHECK(tag >= 0 && tag < (1 << 15), "recv: expected a tag in [0, 32768), got ", tag);
  return issue({CommOp::Recv, ReduceOp::Sum, t, t, src, tag, -1, {}});
}

WorkPtr Communicator::barrier_async() { return issue({CommOp::Barrier, ReduceOp::Sum, {}, {}, -1, 0, -1, {}}); }

namespace {

template <class T, class Acc>
void reduce_typed(T* out, const void* const* parts, int n, int64_t count, ReduceOp op) {
  for (int64_t i = 0; i < count; ++i) {
    Acc acc = Acc(static_cast<const T*>(parts[0])[i]);
    for (int r = 1; r < n; ++r) {
      Acc x = Acc(static_cast<const T*>(parts[r])[i]);
      if (op == ReduceOp::Sum) {
        acc = acc + x;
      } else if constexpr (std::is_floating_point_v<Acc>) {
        const bool keep = std::isnan(acc) || (op == ReduceOp::Max ? x < acc : x > acc);
        acc = keep ? acc : x;  // NaN propagates
      } else {
        acc = (op == ReduceOp::Max ? x > acc : x < acc) ? x : acc;
      }
    }
    out[i] = T(acc);
  }
}

template <class T>
void reduce_int(T* out, const void* const* parts, int n, int64_t count, ReduceOp op) {
  using U = std::make_unsigned_t<T>;  // wrap-around sums without signed-overflow UB
  for (int64_t i = 0; i < count; ++i) {
    T acc = static_cast<const T*>(parts[0])[i];
    for (int r = 1; r < n; ++r) {
      T x = static_cast<const T*>(parts[r])[i];
      acc = op == ReduceOp::Sum   ? T(U(acc) + U(x))
            : op == ReduceOp::Max ? (x > acc ? x : acc)
                                  : (x < acc ? x : acc);
    }
    out[i] = acc;
  }
}

}  // namespace

void reduce_ordered(void* out, const void* const* parts, int n, int64_t count, DType dtype,
                    ReduceOp op) {
  LOOM_INTERNAL_ASSERT(n >= 1 && count >= 0);
  switch (dtype) {
    case DType::F32: return reduce_typed<float, float>(static_cast<float*>(out), parts, n, count, op);
    case DType::F64:
      return reduce_typed<double, double>(static_cast<double*>(out), parts, n, count, op);
    case DType::BF16:
      return reduce_typed<BFloat16, float>(static_cast<BFloat16*>(out), parts, n, count, op);
    case DType::F16: return reduce_typed<Half, float>(static_cast<Half*>(out), parts, n, count, op);
    case DType::I32: return reduce_int<int32_t>(static_cast<int32_t*>(out), parts, n, count, op);
    case DType::I64: return reduce_int<int64_t>(static_cast<int64_t*>(out), parts, n, count, op);
    case DType::Bool: {
      // Bool tensors hold 0/1 bytes; Sum and Max are "or", Min is "and".
      auto* o = static_cast<uint8_t*>(out);
      for (int64_t i = 0; i < count; ++i) {
        uint8_t any = 0, all = 1;
        for (int r = 0; r < n; ++r) {
          const uint8_t x = static_cast<const uint8_t*>(parts[r])[i] ? 1 : 0;
          any |= x;
          all &= x;
        }
        o[i] = op == ReduceOp::Min ? all : any;
      }
      return;
    }
  }
  LOOM_INTERNAL_ASSERT(false, "reduce_ordered: bad dtype");
}

std::string format_ranks(const std::vector<int>& ranks) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? ", " : "") << ranks[i];
  os << "]";
  return os.str();
}

void poll_backoff(int& spins, int long_sleep_us) {
  ++spins;
  if (spins < 64)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 1024 ? 20 : long_sleep_us));
}

void park_forever(WorkPtr w) {
  static std::mutex mu;
  static std::vector<WorkPtr> graveyard;
  std::lock_guard<std::mutex> lock(mu);
  graveyard.push_back(std::move(w));
}

std::string timeout_message(const std::string& group, int rank, double timeout_s,
                            const std::string& op_desc, const std::string& missing,
                            const CollectiveFingerprint& fp) {
  std::ostringstream os;
  os << "CommTimeout: " << op_desc << " on " << group << " did not complete within " << timeout_s
     << " s on rank " << rank << "; " << missing << "; local call: " << fp.str();
  return os.str();
}

std::string mismatch_message(const std::string& group, int rank, const CollectiveFingerprint& mine,
                             const std::vector<std::pair<int, CollectiveFingerprint>>& others) {
  std::ostringstream os;
  os << "CollectiveMismatch: ranks of " << group << " disagree on collective seq " << mine.seq
     << ": rank " << rank << " called " << mine.str();
  for (const auto& [r, fp] : others) os << "; rank " << r << " called " << fp.str();
  return os.str();
}

}  // namespace loom

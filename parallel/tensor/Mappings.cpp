// The four TP communication functions (Mappings.h). Each is a Node that keeps a reference to its
// communicator (autograd::Ctx has no slot for one), recorded only when grad mode is on and the
// input requires grad, exactly like autograd::apply. Collectives run on contiguous copies, so the
// caller's tensors are never written in place.
#include "parallel/tensor/Mappings.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd/Function.h"
#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"
#include "core/util/Check.h"

namespace loom::tp {

namespace {

// Backward node of a one-input, one-output communication function F:
//   static Tensor forward(Communicator&, const Tensor& x);
//   static Tensor backward(Communicator&, const Tensor& dy);
template <class F>
class CommNode : public autograd::Node {
 public:
  explicit CommNode(Communicator& comm) : comm_(comm) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    return {F::backward(comm_, grads[0])};
  }
  std::string name() const override { return F::kName; }

 private:
  Communicator& comm_;
};

template <class F>
Tensor apply_comm(const Tensor& x, Communicator& comm) {
  LOOM_CHECK(x.defined(), F::kName, ": expected a defined tensor");
  const bool record = autograd::GradMode::is_enabled() && x.requires_grad();
  Tensor y;
  {
    autograd::NoGradGuard guard;
    y = F::forward(comm, x);
  }
  if (!record) return y;
  std::vector<Tensor> outs{y};
  autograd::detail::connect(std::make_shared<CommNode<F>>(comm), {x}, outs);
  return outs[0];
}

Tensor all_reduce_copy(const Tensor& x, Communicator& comm) {
  Tensor y = x.detach().clone();  // fresh and contiguous: safe to reduce in place
  comm.all_reduce(y);
  return y;
}

struct CopyToTP {
  static constexpr const char* kName = "CopyToTPBackward";
  static Tensor forward(Communicator&, const Tensor& x) { return x; }
  static Tensor backward(Communicator& c, const Tensor& dy) { return all_reduce_copy(dy, c); }
};

struct ReduceFromTP {
  static constexpr const char* kName = "ReduceFromTPBackward";
  static Tensor forward(Communicator& c, const Tensor& x) { return all_reduce_copy(x, c); }
  static Tensor backward(Communicator&, const Tensor& dy) { return dy; }
};

struct ScatterToTP {
  static constexpr const char* kName = "ScatterToTPBackward";
  static Tensor forward(Communicator& c, const Tensor& x) {
    return slice_for_rank(x, -1, c.rank(), c.size());
  }
  static Tensor backward(Communicator& c, const Tensor& dy) { return all_gather_last_dim(dy, c); }
};

struct GatherFromTP {
  static constexpr const char* kName = "GatherFromTPBackward";
  static Tensor forward(Communicator& c, const Tensor& x) { return all_gather_last_dim(x, c); }
  static Tensor backward(Communicator& c, const Tensor& dy) {
    return slice_for_rank(dy, -1, c.rank(), c.size());
  }
};

}  // namespace

Tensor slice_for_rank(const Tensor& x, int64_t dim, int rank, int size) {
  LOOM_CHECK(x.dim() >= 1, "tp slice: expected a tensor with at least one dim, got ", x.shape());
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  LOOM_CHECK(d >= 0 && d < x.dim(), "tp slice: expected dim in [", -x.dim(), ", ", x.dim(),
             "), got ", dim);
  const int64_t n = x.size(d);
  LOOM_CHECK(size >= 1 && n % size == 0, "tp slice: expected dim ", d, " of shape ", x.shape(),
             " divisible by the TP size ", size);
  LOOM_INTERNAL_ASSERT(rank >= 0 && rank < size, "tp slice: rank ", rank, " of ", size);
  const int64_t m = n / size;
  return x.detach().narrow(d, int64_t(rank) * m, m).contiguous().clone();
}

Tensor all_gather_last_dim(const Tensor& x, Communicator& tp) {
  LOOM_CHECK(x.dim() >= 1, "gather_from_tp: expected a tensor with at least one dim, got ",
             x.shape());
  const int size = tp.size();
  Tensor in = x.detach().contiguous();
  Shape parts_shape = in.shape();
  parts_shape.insert(parts_shape.begin(), int64_t(size));
  Tensor parts = Tensor::empty(parts_shape, in.dtype(), in.device());  // (size, ..., m)
  tp.all_gather(parts, in);
  // (size, d0, ..., dk, m) -> (d0, ..., dk, size, m) -> (d0, ..., dk, size*m)
  std::vector<int64_t> perm;
  for (int64_t i = 1; i < in.dim(); ++i) perm.push_back(i);
  perm.push_back(0);
  perm.push_back(in.dim());
  Shape out_shape = in.shape();
  out_shape.back() *= size;
  return parts.permute(perm).reshape(out_shape).contiguous();
}

// NB: with one TP rank every mapping is the identity: no node, no copy, no collective.
Tensor copy_to_tp(const Tensor& x, Communicator& tp) {
  return tp.size() == 1 ? x : apply_comm<CopyToTP>(x, tp);
}
Tensor reduce_from_tp(const Tensor& x, Communicator& tp) {
  return tp.size() == 1 ? x : apply_comm<ReduceFromTP>(x, tp);
}
Tensor scatter_to_tp(const Tensor& x, Communicator& tp) {
  return tp.size() == 1 ? x : apply_comm<ScatterToTP>(x, tp);
}
Tensor gather_from_tp(const Tensor& x, Communicator& tp) {
  return tp.size() == 1 ? x : apply_comm<GatherFromTP>(x, tp);
}

}  // namespace loom::tp

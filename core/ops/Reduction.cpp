// Reductions with autograd: sum/mean over any set of dims, max/min/argmax over one dim, sum_to.
// The kernel reduces the middle axis of a contiguous (outer, n, inner) view. When the reduced dims
// are adjacent, x is used as is; otherwise x is permuted to (kept..., reduced...) and copied once,
// which keeps the kernel simple and the summation order fixed (CpuReduce.cpp documents it).
#include "core/ops/Reduction.h"

#include <algorithm>

#include "core/autograd/Function.h"
#include "core/backend/Backend.h"
#include "core/ops/Elementwise.h"

namespace loom {

namespace {

// Sorted, de-duplicated, wrapped dims; empty `dims` means every dim (as in PyTorch).
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim,
                                    const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  LOOM_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op,
             ": expected distinct dims, got a repeated dim");
  return out;
}

Shape keepdim_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k = s;
  for (int64_t d : dims) k[size_t(d)] = 1;
  return k;
}

Shape drop_dims(const Shape& s, const std::vector<int64_t>& dims) {
  Shape r;
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::binary_search(dims.begin(), dims.end(), int64_t(i))) r.push_back(s[i]);
  return r;
}

// t viewed with `shape` (same numel). NB: View.cpp cannot view a 0-d tensor as (1, 1, ...), so a
// 0-d t is expanded instead (a stride-0 view of its one element).
Tensor reshape_to(const Tensor& t, const Shape& shape) {
  if (t.dim() == 0) return t.expand(shape);
  return t.reshape(shape);
}

// Runs the backend reduction of x over `dims`; returns values with the keepdim shape.
Tensor reduce_dims(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                   const Tensor& indices_keep) {
  const Shape& s = x.shape();
  Shape keep = keepdim_shape(s, dims);
  Tensor out = Tensor::empty(keep, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  Tensor src = x;
  int64_t outer = 1, n = 1, inner = 1;
  const bool adjacent = dims.empty() || dims.back() - dims.front() + 1 == int64_t(dims.size());
  if (adjacent) {
    src = x.contiguous();
    int64_t first = dims.empty() ? int64_t(s.size()) : dims.front();
    int64_t last = dims.empty() ? int64_t(s.size()) - 1 : dims.back();
    for (int64_t d = 0; d < int64_t(s.size()); ++d) {
      int64_t sz = s[size_t(d)];
      (d < first ? outer : d <= last ? n : inner) *= sz;
    }
  } else {
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < int64_t(s.size()); ++d)
      if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d);
    for (int64_t d : dims) perm.push_back(d);
    src = x.permute(perm).contiguous();
    for (int64_t d : dims) n *= s[size_t(d)];
    outer = x.numel() / std::max<int64_t>(n, 1);
    if (n == 0) outer = out.numel();
  }
  backend_for(x.device()).reduce(op, out, indices_keep, src, outer, n, inner);
  return out;
}

struct SumFn {
  static constexpr const char* kName = "SumBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, const std::vector<int64_t>& dims,
                        bool keepdim) {
    std::vector<int64_t> d = normalize_dims(dims, x.dim(), "sum");
    Tensor y = reduce_dims(ReduceOp::Sum, x, d, Tensor());
    ctx.shapes = {x.shape(), y.shape()};
    return keepdim ? y : y.view(drop_dims(x.shape(), d));
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {reshape_to(g[0], ctx.shapes[1]).expand(ctx.shapes[0]).contiguous()};
  }
};

// Max or min over one dim; the gradient goes to the first arg max/min.
template <ReduceOp Op>
struct ExtremumFn {
  static constexpr const char* kName = Op == ReduceOp::Max ? "MaxBackward" : "MinBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, int64_t dim, bool keepdim,
                        Tensor* indices) {
    const char* name = Op == ReduceOp::Max ? "max" : "min";
    int64_t d = wrap_dim(dim, x.dim(), name);
    LOOM_CHECK(x.shape()[size_t(d)] > 0, name, ": expected a non-empty dim ", d, ", got shape ",
               x.shape());
    Shape keep = keepdim_shape(x.shape(), {d});
    Tensor idx = Tensor::empty(keep, DType::I64, x.device());
    Tensor y = reduce_dims(Op, x, {d}, idx);
    ctx.save(idx);
    ctx.shapes = {x.shape(), keep};
    ctx.ints = {d};
    Shape drop = drop_dims(x.shape(), {d});
    if (indices) *indices = keepdim ? idx : idx.view(drop);
    return keepdim ? y : y.view(drop);
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    const Shape& xs = ctx.shapes[0];
    const int64_t d = ctx.ints[0];
    Shape pos_shape(xs.size(), 1);
    pos_shape[size_t(d)] = xs[size_t(d)];
    Tensor pos = Tensor::arange(xs[size_t(d)], DType::I64, g[0].device()).view(pos_shape);
    Tensor hit = eq(pos, ctx.saved(0));  // (xs) one-hot of the arg index along d
    Tensor zero = Tensor::scalar(0.0, g[0].dtype(), g[0].device());
    return {where(hit, reshape_to(g[0], ctx.shapes[1]), zero)};
  }
};

// 0-d tensors reduce like a 1-element vector and give a 0-d result.
Tensor extremum(bool is_max, const Tensor& x, int64_t dim, bool keepdim, Tensor* indices) {
  if (x.dim() == 0) {
    wrap_dim(dim, 1, is_max ? "max" : "min");
    Tensor y = extremum(is_max, x.expand({1}), 0, false, indices);
    if (indices) *indices = indices->reshape({});
    return y.reshape({});
  }
  if (is_max) return autograd::apply<ExtremumFn<ReduceOp::Max>>(x, dim, keepdim, indices);
  return autograd::apply<ExtremumFn<ReduceOp::Min>>(x, dim, keepdim, indices);
}

}  // namespace

Tensor sum(const Tensor& x) { return autograd::apply<SumFn>(x, std::vector<int64_t>{}, false); }

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return autograd::apply<SumFn>(x, dims, keepdim);
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  LOOM_CHECK(is_floating(x.dtype()), "mean: expected a floating dtype, got ",
             dtype_name(x.dtype()));
  std::vector<int64_t> d = normalize_dims(dims, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t k : d) count *= x.shape()[size_t(k)];
  return div(sum(x, d, keepdim), double(count));  // count 0 gives 0/0 = NaN, as in PyTorch
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim, Tensor* indices) {
  return extremum(true, x, dim, keepdim, indices);
}

Tensor max(const Tensor& x) {
  return extremum(true, reshape_to(x, {x.numel()}), 0, false, nullptr);
}

Tensor min(const Tensor& x, int64_t dim, bool keepdim, Tensor* indices) {
  return extremum(false, x, dim, keepdim, indices);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  Tensor idx;
  extremum(true, x.detach(), dim, keepdim, &idx);
  return idx;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - int64_t(shape.size());
  LOOM_CHECK(lead >= 0, "sum_to: cannot sum shape ", x.shape(), " to ", shape, " (more dims)");
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
      continue;
    }
    int64_t want = shape[size_t(i - lead)], have = x.shape()[size_t(i)];
    LOOM_CHECK(want == have || want == 1, "sum_to: cannot sum shape ", x.shape(), " to ", shape);
    if (want != have) dims.push_back(i);
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace loom

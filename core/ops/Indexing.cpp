// Joining, splitting and indexing ops with autograd (Indexing.h). cat copies each input into a
// slice of one fresh tensor (its backward hands out slices of the gradient); stack is cat of
// unsqueezed inputs; split/chunk return narrow views. index_select and gather call the backend
// kernels on (outer, n, inner) views of contiguous data; their backward scatters with index_add /
// scatter_add into zeros (deterministic kernels).
#include "core/ops/Indexing.h"

#include "core/autograd/Function.h"
#include "core/backend/Backend.h"

namespace loom {

namespace {

using autograd::Ctx;

struct CatFn {
  static constexpr const char* kName = "CatBackward";
  static Tensor forward(Ctx& ctx, const std::vector<Tensor>& ts, int64_t dim) {
    Shape shape = ts[0].shape();
    shape[size_t(dim)] = 0;
    for (const Tensor& t : ts) shape[size_t(dim)] += t.size(dim);
    Tensor out = Tensor::empty(shape, ts[0].dtype(), ts[0].device());
    int64_t off = 0;
    ctx.ints = {dim};
    for (const Tensor& t : ts) {
      if (t.numel() > 0) out.narrow(dim, off, t.size(dim)).copy_(t);
      off += t.size(dim);
      ctx.ints.push_back(t.size(dim));
    }
    return out;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    const int64_t dim = ctx.ints[0];
    std::vector<Tensor> grads;
    int64_t off = 0;
    for (size_t i = 1; i < ctx.ints.size(); ++i) {
      grads.push_back(g[0].narrow(dim, off, ctx.ints[i]));
      off += ctx.ints[i];
    }
    return grads;
  }
};

// x as (outer, n, inner) around dim d.
struct Dims3 {
  int64_t outer = 1, n = 1, inner = 1;
};
Dims3 dims3(const Shape& s, int64_t d) {
  Dims3 r;
  for (int64_t i = 0; i < int64_t(s.size()); ++i) {
    if (i < d) r.outer *= s[size_t(i)];
    if (i > d) r.inner *= s[size_t(i)];
  }
  r.n = s[size_t(d)];
  return r;
}

struct IndexSelectFn {
  static constexpr const char* kName = "IndexSelectBackward";
  static Tensor forward(Ctx& ctx, const Tensor& x, int64_t d, const Tensor& index) {
    Tensor idx = index.contiguous().reshape({index.numel()});
    Dims3 k = dims3(x.shape(), d);
    Shape shape = x.shape();
    shape[size_t(d)] = idx.numel();
    Tensor out = Tensor::empty(shape, x.dtype(), x.device());
    if (idx.numel() > 0)
      backend_for(x.device()).index_select(out, x.contiguous(), idx, k.outer, k.n, k.inner);
    ctx.save(idx);
    ctx.shapes = {x.shape()};
    ctx.ints = {d};
    return out;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor idx = ctx.saved(0);
    Dims3 k = dims3(ctx.shapes[0], ctx.ints[0]);
    Tensor dx = Tensor::zeros(ctx.shapes[0], g[0].dtype(), g[0].device());
    if (idx.numel() > 0)
      backend_for(dx.device()).index_add(dx, g[0].contiguous(), idx, k.outer, k.n, k.inner);
    return {dx, Tensor()};
  }
};

struct GatherFn {  // index has x's shape except along d
  static constexpr const char* kName = "GatherBackward";
  static Tensor forward(Ctx& ctx, const Tensor& x, int64_t d, const Tensor& index) {
    Tensor idx = index.contiguous();
    Dims3 k = dims3(x.shape(), d);
    Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
    if (idx.numel() > 0)
      backend_for(x.device()).gather(out, x.contiguous(), idx, k.outer, k.n, k.inner);
    ctx.save(idx);
    ctx.shapes = {x.shape()};
    ctx.ints = {d};
    return out;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor idx = ctx.saved(0);
    Dims3 k = dims3(ctx.shapes[0], ctx.ints[0]);
    Tensor dx = Tensor::zeros(ctx.shapes[0], g[0].dtype(), g[0].device());
    if (idx.numel() > 0)
      backend_for(dx.device()).scatter_add(dx, g[0].contiguous(), idx, k.outer, k.n, k.inner);
    return {dx, Tensor()};
  }
};

void check_index(const Tensor& x, const Tensor& index, const char* op) {
  LOOM_CHECK(index.dtype() == DType::I64, op, ": expected index of dtype i64, got ",
             dtype_name(index.dtype()));
  LOOM_CHECK(index.device() == x.device(), op, ": expected index on the input's device");
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  LOOM_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& t0 = tensors[0];
  LOOM_CHECK(t0.dim() >= 1, "cat: expected tensors with at least 1 dim, got a 0-d tensor");
  const int64_t d = wrap_dim(dim, t0.dim(), "cat");
  for (size_t i = 1; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    LOOM_CHECK(t.dtype() == t0.dtype() && t.device() == t0.device(), "cat: expected tensor ", i,
               " of dtype ", dtype_name(t0.dtype()), " on the first tensor's device, got ",
               dtype_name(t.dtype()));
    bool ok = t.dim() == t0.dim();
    for (int64_t k = 0; ok && k < t0.dim(); ++k) ok = k == d || t.size(k) == t0.size(k);
    LOOM_CHECK(ok, "cat: expected tensor ", i, " to match shape ", t0.shape(),
               " except in dim ", d, ", got ", t.shape());
  }
  return autograd::apply<CatFn>(tensors, d);
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  LOOM_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    LOOM_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: expected tensor ", i,
               " of shape ", tensors[0].shape(), ", got ", tensors[i].shape());
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  LOOM_CHECK(split_size >= 1, "split: expected split_size >= 1, got ", split_size);
  const int64_t d = wrap_dim(dim, x.dim(), "split"), n = x.size(d);
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < n; start += split_size)
    parts.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  if (parts.empty()) parts.push_back(x);  // PyTorch returns one empty piece for a size-0 dim
  return parts;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    LOOM_CHECK(s >= 0, "split: expected sizes >= 0, got ", s);
    total += s;
  }
  LOOM_CHECK(total == x.size(d), "split: expected sizes summing to ", x.size(d), " (dim ", d,
             "), got ", total);
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(x.narrow(d, start, s));
    start += s;
  }
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  LOOM_CHECK(chunks >= 1, "chunk: expected chunks >= 1, got ", chunks);
  const int64_t d = wrap_dim(dim, x.dim(), "chunk"), n = x.size(d);
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  LOOM_CHECK(x.dim() >= 1, "index_select: expected an input with at least 1 dim, got 0-d");
  check_index(x, index, "index_select");
  LOOM_CHECK(index.dim() <= 1, "index_select: expected a 1-d index, got shape ", index.shape());
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  return autograd::apply<IndexSelectFn>(x, d, index);
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_index(x, index, "gather");
  LOOM_CHECK(index.dim() == x.dim() && x.dim() >= 1, "gather: expected an index with ", x.dim(),
             " dims, got shape ", index.shape());
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  // PyTorch allows index.size(k) <= x.size(k) for k != d: gather from the leading block of x.
  Tensor xs = x;
  for (int64_t k = 0; k < x.dim(); ++k) {
    if (k == d) continue;
    LOOM_CHECK(index.size(k) <= x.size(k), "gather: expected index.size(", k, ") <= ", x.size(k),
               ", got ", index.size(k));
    if (index.size(k) < x.size(k)) xs = xs.narrow(k, 0, index.size(k));
  }
  return autograd::apply<GatherFn>(xs, d, index);
}

}  // namespace loom

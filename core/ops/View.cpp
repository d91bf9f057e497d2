// View ops (view, transpose, permute, narrow/slice/select, expand, squeeze/unsqueeze) and copies
// (contiguous, clone, to dtype/device) with their backward rules. Views share storage with their
// base; the backward of a view maps the gradient back to the base's geometry.
#include "core/ops/View.h"

#include <algorithm>
#include <numeric>

#include "core/autograd/Function.h"
#include "core/backend/Backend.h"
#include "core/ops/Reduction.h"

namespace loom {

namespace {

Shape infer_shape(const Shape& requested, int64_t numel, const char* op) {
  Shape s = requested;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      LOOM_CHECK(infer < 0, op, ": expected at most one -1 in shape ", requested);
      infer = int64_t(i);
    } else {
      LOOM_CHECK(s[i] >= 0, op, ": expected sizes >= 0 or -1, got ", requested);
      known *= s[i];
    }
  }
  if (infer >= 0) {
    LOOM_CHECK(known > 0 && numel % known == 0, op, ": shape ", requested,
               " is invalid for a tensor of ", numel, " elements");
    s[size_t(infer)] = numel / known;
  }
  LOOM_CHECK(shape_numel(s) == numel, op, ": shape ", requested, " is invalid for a tensor of ",
             numel, " elements");
  return s;
}

// Strides for viewing (shape, strides) as new_shape without copying, or empty if impossible
// (PyTorch's computeStride rule: each run of merged dims must be contiguous within itself).
bool view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape, Shape& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) == 0 || shape.empty()) {  // empty or 0-d: any contiguous view works
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[size_t(d)];
    if (d == 0 || (shape[size_t(d - 1)] != 1 &&
                   strides[size_t(d - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[size_t(view_d)] == 1)) {
        out[size_t(view_d)] = view_numel * chunk_base_stride;
        view_numel *= new_shape[size_t(view_d)];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[size_t(d - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

struct ViewFn {
  static constexpr const char* kName = "ViewBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, const Shape& shape) {
    Shape s = infer_shape(shape, x.numel(), "view");
    Shape st;
    LOOM_CHECK(view_strides(x.shape(), x.strides(), s, st), "view: cannot view a tensor of shape ",
               x.shape(), " and strides ", x.strides(), " as ", s,
               "; hint: use reshape() (which copies) or call contiguous() first");
    ctx.shapes = {x.shape()};
    return make_view(x, s, st, x.offset());
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {g[0].reshape(ctx.shapes[0])};
  }
};

struct AsStridedPermuteFn {  // transpose / permute
  static constexpr const char* kName = "PermuteBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, const std::vector<int64_t>& dims) {
    LOOM_CHECK(int64_t(dims.size()) == x.dim(), "permute: expected ", x.dim(), " dims, got ",
               dims.size());
    Shape s(dims.size()), st(dims.size());
    std::vector<bool> used(dims.size(), false);
    std::vector<int64_t> inv(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
      int64_t d = wrap_dim(dims[i], x.dim(), "permute");
      LOOM_CHECK(!used[size_t(d)], "permute: dim ", d, " repeated in the permutation");
      used[size_t(d)] = true;
      s[i] = x.shape()[size_t(d)];
      st[i] = x.strides()[size_t(d)];
      inv[size_t(d)] = int64_t(i);
    }
    ctx.ints = inv;
    return make_view(x, s, st, x.offset());
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {g[0].permute(ctx.ints)};
  }
};

struct SliceFn {
  static constexpr const char* kName = "SliceBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, int64_t dim, int64_t start,
                        int64_t end, int64_t step) {
    int64_t d = wrap_dim(dim, x.dim(), "slice");
    int64_t n = x.shape()[size_t(d)];
    LOOM_CHECK(step >= 1, "slice: expected step >= 1, got ", step);
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = std::clamp<int64_t>(start, 0, n);
    end = std::clamp<int64_t>(end, start, n);
    Shape s = x.shape(), st = x.strides();
    s[size_t(d)] = (end - start + step - 1) / step;
    st[size_t(d)] *= step;
    ctx.shapes = {x.shape()};
    ctx.ints = {d, start, end, step};
    return make_view(x, s, st, x.offset() + start * x.strides()[size_t(d)]);
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    Tensor dx = Tensor::zeros(ctx.shapes[0], g[0].dtype(), g[0].device());
    dx.slice(ctx.ints[0], ctx.ints[1], ctx.ints[2], ctx.ints[3]).copy_(g[0]);
    return {dx};
  }
};

struct ExpandFn {
  static constexpr const char* kName = "ExpandBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, const Shape& shape) {
    LOOM_CHECK(shape.size() >= size_t(x.dim()), "expand: cannot expand shape ", x.shape(), " to ",
               shape, " (fewer dims)");
    size_t lead = shape.size() - size_t(x.dim());
    Shape s(shape.size()), st(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i < lead) {
        LOOM_CHECK(shape[i] >= 0, "expand: expected a size >= 0 for new dim ", i, ", got ", shape[i]);
        s[i] = shape[i];
        st[i] = 0;
        continue;
      }
      int64_t xs = x.shape()[i - lead];
      int64_t want = shape[i] == -1 ? xs : shape[i];
      LOOM_CHECK(xs == want || xs == 1, "expand: cannot expand shape ", x.shape(), " to ", shape,
                 " (dim ", i, ": ", xs, " -> ", want, ")");
      s[i] = want;
      st[i] = xs == want ? x.strides()[i - lead] : 0;
    }
    ctx.shapes = {x.shape()};
    return make_view(x, s, st, x.offset());
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {sum_to(g[0], ctx.shapes[0])};
  }
};

struct CloneFn {  // also contiguous(): a copy into fresh contiguous memory
  static constexpr const char* kName = "CloneBackward";
  static Tensor forward(autograd::Ctx&, const Tensor& x) {
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (y.numel() > 0) backend_for(x.device()).copy(y, x);
    return y;
  }
  static std::vector<Tensor> backward(autograd::Ctx&, std::vector<Tensor> g) { return {g[0]}; }
};

struct ToDTypeFn {
  static constexpr const char* kName = "ToDTypeBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, DType dtype) {
    ctx.dtypes = {x.dtype()};
    Tensor y = Tensor::empty(x.shape(), dtype, x.device());
    if (y.numel() > 0) backend_for(x.device()).copy(y, x);
    return y;
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {g[0].to(ctx.dtypes[0])};
  }
};

Tensor copy_across_devices(const Tensor& x, Device device) {
  Tensor src = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), device);
  if (y.numel() == 0) return y;
  if (src.device().is_cpu()) {
    backend_for(device).copy_from_host(y.raw_data(), src.raw_data(), y.nbytes(), device.index);
  } else if (device.is_cpu()) {
    backend_for(src.device()).copy_to_host(y.raw_data(), src.raw_data(), y.nbytes(),
                                           src.device().index);
  } else {  // device to device through the host
    Tensor host = copy_across_devices(src, Device::cpu());
    return copy_across_devices(host, device);
  }
  return y;
}

struct ToDeviceFn {
  static constexpr const char* kName = "ToDeviceBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, Device device) {
    ctx.ints = {int64_t(x.device().type), x.device().index};
    return copy_across_devices(x, device);
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {g[0].to(Device(DeviceType(ctx.ints[0]), int(ctx.ints[1])))};
  }
};

}  // namespace

Tensor Tensor::view(const Shape& shape) const { return autograd::apply<ViewFn>(*this, shape); }

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = infer_shape(shape, numel(), "reshape");
  Shape st;
  if (view_strides(this->shape(), strides(), s, st)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  return autograd::apply<AsStridedPermuteFn>(*this, dims);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> dims(static_cast<size_t>(this->dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[size_t(wrap_dim(d0, dim(), "transpose"))],
            dims[size_t(wrap_dim(d1, dim(), "transpose"))]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  return autograd::apply<SliceFn>(*this, dim, start, end, step);
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  int64_t d = wrap_dim(dim, this->dim(), "narrow");
  LOOM_CHECK(start >= 0 && length >= 0 && start + length <= size(d), "narrow: expected start ",
             "and length with 0 <= start <= start+length <= ", size(d), " (dim ", d, "), got start ",
             start, " length ", length);
  return slice(d, start, start + length, 1);
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  int64_t d = wrap_dim(dim, this->dim(), "select");
  int64_t n = size(d);
  LOOM_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d,
             " of size ", n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const {
  if (shape == this->shape()) return *this;
  return autograd::apply<ExpandFn>(*this, shape);
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, this->dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::squeeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, this->dim(), "squeeze");
  if (size(d) != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return view(s);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t a = wrap_dim(start_dim, dim(), "flatten"), b = wrap_dim(end_dim, dim(), "flatten");
  LOOM_CHECK(a <= b, "flatten: expected start_dim <= end_dim, got ", a, " > ", b);
  Shape s(shape().begin(), shape().begin() + a);
  int64_t m = 1;
  for (int64_t i = a; i <= b; ++i) m *= size(i);
  s.push_back(m);
  s.insert(s.end(), shape().begin() + b + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return autograd::apply<CloneFn>(*this);
}

Tensor Tensor::clone() const { return autograd::apply<CloneFn>(*this); }

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  return to_dtype(*this, dtype);
}

Tensor to_dtype(const Tensor& x, DType dtype) { return autograd::apply<ToDTypeFn>(x, dtype); }

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  return autograd::apply<ToDeviceFn>(*this, device);
}

}  // namespace loom

// Tensor: a cheap handle (shared_ptr<TensorImpl>) to {storage, offset, shape, strides, dtype} plus
// autograd metadata. Copying a Tensor is shallow: both copies are the *same* tensor (same .grad, same
// requires_grad), exactly as a Python variable binding in PyTorch. Views (transpose, narrow, reshape,
// expand, ...) make a new TensorImpl over the same Storage; clone() is the one deep copy.
//
//   Tensor w = Tensor::randn({64, 32}, gen).set_requires_grad(true);
//   Tensor y = loom::matmul(x, w.t()).sum();
//   y.backward();                    // w.grad() now holds dy/dw
//
// NB: we use a handle to a shared impl instead of the value type sketched in STYLE.md so that
// set_requires_grad / grad on one copy are seen by every copy (no silent divergence).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/tensor/DType.h"
#include "core/tensor/Device.h"
#include "core/tensor/Shape.h"
#include "core/tensor/Storage.h"

namespace loom {

class Tensor;
class Generator;
namespace autograd {
class Node;
struct AutogradMeta;
}  // namespace autograd

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = DType::F32;
  std::shared_ptr<autograd::AutogradMeta> autograd;  // null until autograd touches the tensor
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (e.g. "no gradient")
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories -----------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::I64, Device device = Device::cpu());
  // Copies `values` (row-major) into a new CPU tensor of the given shape, then moves it to `device`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  // Random fills from the counter-based generator: element i's value depends only on
  // (seed, offset, i), never on thread count or device.
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::F32,
                      Device device = Device::cpu(), double mean = 0.0, double std = 1.0);
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::F32,
                     Device device = Device::cpu(), double lo = 0.0, double hi = 1.0);

  // ---- metadata ------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  int64_t dim() const { return int64_t(impl().shape.size()); }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t offset() const { return impl().offset; }
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return size_t(numel()) * element_size(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  bool shares_storage(const Tensor& o) const { return storage() == o.storage(); }
  uint64_t version() const { return impl().storage->version(); }
  void bump_version() const { impl().storage->bump_version(); }
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Raw data of the first element (offset applied). Checks the dtype for the typed overload.
  void* raw_data() const;
  template <class T> T* data() const;
  // Reads a one-element tensor (any device).
  double item() const;
  // Copies to a contiguous CPU std::vector (converting the dtype to T).
  template <class T> std::vector<T> to_vector() const;

  // ---- views (differentiable; share storage) ---------------------------------------------
  Tensor view(const Shape& shape) const;     // requires compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;  // view if possible, else a contiguous copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor expand(const Shape& shape) const;          // broadcast (stride 0), -1 keeps a size
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // ---- copies and conversions ----------------------------------------------------------------
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;       // deep copy, differentiable
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor detach() const;  // same storage, no autograd history

  // ---- in-place (not differentiable; bump the version counter) ----------------------------
  Tensor& copy_(const Tensor& src);  // broadcasts src to self's shape; converts dtype/device
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& add_(const Tensor& other, double alpha = 1.0);  // self += alpha * other
  Tensor& mul_(double value);
  Tensor& normal_(Generator& gen, double mean = 0.0, double std = 1.0);
  Tensor& uniform_(Generator& gen, double lo = 0.0, double hi = 1.0);

  // ---- autograd ------------------------------------------------------------------------------
  bool requires_grad() const;
  // Marks a leaf as trainable; returns *this for chaining. Throws on non-floating dtypes.
  Tensor set_requires_grad(bool value = true) const;
  Tensor grad() const;  // undefined if none yet
  void set_grad(const Tensor& g) const;
  std::shared_ptr<autograd::Node> grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  // Runs backward from this tensor. `grad` may be omitted for one-element tensors (then 1).
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Called once per backward pass with the leaf after its .grad for that pass is final.
  // Returns a handle for remove_hook.
  int register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const;
  void remove_hook(int handle) const;

  // ---- printing -------------------------------------------------------------------------------
  std::string str(int64_t max_per_dim = 6) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Makes a view over `base`'s storage with the given geometry (no autograd); used by view ops.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

}  // namespace loom

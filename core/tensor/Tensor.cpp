// Tensor factories, metadata, element access, in-place kernels and printing. The differentiable
// view and copy methods (view, transpose, contiguous, to, ...) live in core/ops/View.cpp.
#include "core/tensor/Tensor.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"
#include "core/backend/Backend.h"
#include "core/random/Generator.h"

namespace loom {

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  LOOM_CHECK(dim >= lo && dim <= hi, op, ": expected dim in [", lo, ", ", hi, "], got ", dim);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    LOOM_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ",
               shape_str(b), " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

DType dtype_from_name(const std::string& n) {
  if (n == "f32" || n == "float32" || n == "fp32") return DType::F32;
  if (n == "f64" || n == "float64" || n == "fp64") return DType::F64;
  if (n == "bf16" || n == "bfloat16") return DType::BF16;
  if (n == "f16" || n == "float16" || n == "fp16") return DType::F16;
  if (n == "i32" || n == "int32") return DType::I32;
  if (n == "i64" || n == "int64") return DType::I64;
  if (n == "bool") return DType::Bool;
  throw ValueError("dtype: expected one of f32, f64, bf16, f16, i32, i64, bool, got \"" + n + "\"");
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    std::string idx = s.substr(5);
    bool digits = !idx.empty() && idx.size() < 4 &&
                  idx.find_first_not_of("0123456789") == std::string::npos;
    if (digits) return Device::cuda(std::stoi(idx));
  }
  throw ValueError("device: expected \"cpu\", \"cuda\" or \"cuda:N\", got \"" + s + "\"");
}

// ---- factories -------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  std::optional<int64_t> numel = try_numel(shape);
  LOOM_CHECK(numel.has_value(), "Tensor::empty: expected sizes >= 0 whose product fits in int64, ",
             "got ", shape);
  std::optional<int64_t> nbytes = try_mul(*numel, int64_t(dtype_size(dtype)));
  LOOM_CHECK(nbytes.has_value(), "Tensor::empty: ", shape, " of ", dtype_name(dtype),
             " needs more than 2^63 bytes");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(*nbytes), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel() > 0) backend_for(device).fill(t, value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(i);
  return from_vector<double>(v, {n}).to(dtype).to(device);
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  LOOM_CHECK(int64_t(values.size()) == shape_numel(shape), "Tensor::from_vector: expected ",
             shape_numel(shape), " values for shape ", shape, ", got ", values.size());
  Tensor t = empty(shape, dtype_of_v<T>, Device::cpu());
  if (!values.empty()) {
    if constexpr (std::is_same_v<T, bool>) {
      bool* p = t.data<bool>();
      for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
    } else {
      std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    }
  }
  return device.is_cpu() ? t : t.to(device);
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<bool>(const std::vector<bool>&, const Shape&, Device);
template Tensor Tensor::from_vector<BFloat16>(const std::vector<BFloat16>&, const Shape&, Device);
template Tensor Tensor::from_vector<Half>(const std::vector<Half>&, const Shape&, Device);

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device, double mean,
                     double std) {
  Tensor t = empty(shape, dtype, device);
  t.normal_(gen, mean, std);
  return t;
}
Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype, Device device, double lo,
                    double hi) {
  Tensor t = empty(shape, dtype, device);
  t.uniform_(gen, lo, hi);
  return t;
}

// ---- metadata --------------------------------------------------------------------------------

TensorImpl& Tensor::impl() const {
  LOOM_CHECK(impl_ != nullptr, "Tensor: expected a defined tensor, got an undefined one");
  return *impl_;
}
int64_t Tensor::size(int64_t d) const { return shape()[size_t(wrap_dim(d, dim(), "size"))]; }
int64_t Tensor::stride(int64_t d) const { return strides()[size_t(wrap_dim(d, dim(), "stride"))]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    int64_t s = shape()[size_t(i)];
    if (s == 1) continue;
    if (strides()[size_t(i)] != expected) return false;
    expected *= s;
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) + offset() * int64_t(element_size());
}

template <class T>
T* Tensor::data() const {
  LOOM_CHECK(dtype() == dtype_of_v<T>, "Tensor::data: expected dtype ", dtype_name(dtype_of_v<T>),
             ", got ", dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template BFloat16* Tensor::data<BFloat16>() const;
template Half* Tensor::data<Half>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template bool* Tensor::data<bool>() const;

double Tensor::item() const {
  LOOM_CHECK(numel() == 1, "Tensor::item: expected a one-element tensor, got shape ", shape());
  return to_vector<double>()[0];
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(Device::cpu()).to(dtype_of_v<T>).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  int64_t lo = offset, hi = offset;
  for (size_t i = 0; i < impl->shape.size(); ++i) {
    if (impl->shape[i] == 0) { hi = lo - 1; break; }
    int64_t ext = (impl->shape[i] - 1) * impl->strides[i];
    (ext < 0 ? lo : hi) += ext;
  }
  LOOM_INTERNAL_ASSERT(hi < lo || (lo >= 0 && size_t(hi + 1) * dtype_size(impl->dtype) <=
                                                  impl->storage->nbytes()),
                       "view out of bounds: elements [", lo, ", ", hi, "] of a storage of ",
                       impl->storage->nbytes(), " bytes");
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

// ---- in-place --------------------------------------------------------------------------------

namespace {
void check_inplace(const Tensor& t, const char* op) {
  LOOM_CHECK(!(autograd::GradMode::is_enabled() && t.requires_grad()), op,
             ": in-place operation on a tensor that requires grad; hint: wrap it in NoGradGuard "
             "(optimizer updates) or use the out-of-place op");
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  Tensor s = src.detach();
  if (s.shape() != shape()) s = s.expand(shape());
  if (s.device() != device()) s = s.contiguous().to(device());
  if (numel() > 0) backend_for(device()).copy(*this, s);
  bump_version();
  return *this;
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  if (numel() > 0) backend_for(device()).fill(*this, value);
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  Tensor o = other.detach();
  LOOM_CHECK(o.dtype() == dtype(), "add_: expected other of dtype ", dtype_name(dtype()), ", got ",
             dtype_name(o.dtype()));
  if (o.shape() != shape()) o = o.expand(shape());
  Backend& be = backend_for(device());
  if (alpha != 1.0) {
    Tensor scaled = Tensor::empty(shape(), dtype(), device());
    be.unary(UnaryOp::MulScalar, scaled, o, alpha, 0.0);
    o = scaled;
  }
  if (numel() > 0) be.binary(BinaryOp::Add, *this, *this, o);
  bump_version();
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  if (numel() > 0) backend_for(device()).unary(UnaryOp::MulScalar, *this, *this, value, 0.0);
  bump_version();
  return *this;
}

namespace {
Tensor& fill_random_(Tensor& t, Generator& gen, RandomKind kind, double a, double b) {
  LOOM_CHECK(is_floating(t.dtype()), "random fill: expected a floating dtype, got ",
             dtype_name(t.dtype()));
  check_inplace(t, "random fill");
  uint64_t off = gen.next_offset(uint64_t(t.numel()));
  if (t.numel() == 0) return t;
  if (t.is_contiguous()) {
    backend_for(t.device()).fill_random(t, kind, gen.seed(), off, a, b);
  } else {
    Tensor tmp = Tensor::empty(t.shape(), t.dtype(), t.device());
    backend_for(t.device()).fill_random(tmp, kind, gen.seed(), off, a, b);
    backend_for(t.device()).copy(t, tmp);
  }
  t.bump_version();
  return t;
}
}  // namespace

Tensor& Tensor::normal_(Generator& gen, double mean, double std) {
  return fill_random_(*this, gen, RandomKind::Normal, mean, std);
}
Tensor& Tensor::uniform_(Generator& gen, double lo, double hi) {
  return fill_random_(*this, gen, RandomKind::Uniform, lo, hi);
}

// ---- autograd accessors ----------------------------------------------------------------------

bool Tensor::requires_grad() const {
  const auto& m = impl().autograd;
  return m && m->requires_grad;
}

Tensor Tensor::set_requires_grad(bool value) const {
  LOOM_CHECK(!value || is_floating(dtype()), "set_requires_grad: only floating tensors can "
             "require grad, got dtype ", dtype_name(dtype()));
  LOOM_CHECK(is_leaf(), "set_requires_grad: expected a leaf tensor (one not produced by an op); "
             "hint: use .detach().set_requires_grad()");
  autograd::meta(*this).requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& m = impl().autograd;
  return m ? m->grad : Tensor();
}
void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    LOOM_CHECK(g.shape() == shape(), "set_grad: expected shape ", shape(), ", got ", g.shape());
  autograd::meta(*this).grad = g;
}
std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  const auto& m = impl().autograd;
  return m ? m->grad_fn : nullptr;
}

int Tensor::register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) const {
  LOOM_CHECK(is_leaf() && requires_grad(), "register_post_accumulate_grad_hook: expected a leaf "
             "that requires grad");
  auto& m = autograd::meta(*this);
  int id = m.next_hook_id++;
  m.post_accumulate_hooks.emplace_back(id, std::move(hook));
  return id;
}
void Tensor::remove_hook(int handle) const {
  auto& hooks = autograd::meta(*this).post_accumulate_hooks;
  std::erase_if(hooks, [&](const auto& h) { return h.first == handle; });
}

// ---- printing --------------------------------------------------------------------------------

namespace {
void print_rec(std::ostringstream& os, const std::vector<double>& v, const Shape& shape,
               size_t d, int64_t base, int64_t max_per_dim, bool is_int) {
  if (shape.empty()) {
    os << v[0];
    return;
  }
  int64_t inner = 1;
  for (size_t i = d + 1; i < shape.size(); ++i) inner *= shape[i];
  os << "[";
  int64_t n = shape[d];
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      os << "..., ";
      i = n - max_per_dim / 2;
    }
    if (d + 1 == shape.size()) {
      double x = v[size_t(base + i)];
      if (is_int) os << int64_t(x); else os << x;
    } else {
      print_rec(os, v, shape, d + 1, base + i * inner, max_per_dim, is_int);
    }
    if (i + 1 < n) os << ", ";
  }
  os << "]";
}
}  // namespace

std::string Tensor::str(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
     << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ")\n" << std::setprecision(6);
  if (numel() == 0) {
    os << "[]";
  } else {
    std::vector<double> v = to_vector<double>();
    print_rec(os, v, shape(), 0, 0, std::max<int64_t>(max_per_dim, 2),
              !is_floating(dtype()));
  }
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace loom

// Elementwise CUDA kernels over any strided layout (stride-0 broadcast allowed, up to 8 dims after
// coalescing): fill, copy with dtype conversion, unary, binary, where, and Philox random fills.
// Math runs in float (double for f64) and matches the CPU backend's formulas; random fills use
// exactly the CPU's per-element Philox counters, so CPU and CUDA random tensors are identical.
#include "core/backend/cuda/CudaCommon.cuh"
#include "core/random/Philox.h"

namespace loom::cuda {

namespace {
constexpr int kBlock = 256;
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluC = 0.044715;

template <int N, class F>
__global__ void strided_kernel(StridedArgs<N> a, F f) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < a.numel;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[N];
    strided_offsets(a, i, off);
    f(off);
  }
}

template <int N, class F>
void launch_strided(const StridedArgs<N>& a, cudaStream_t s, F f) {
  if (a.numel == 0) return;
  strided_kernel<N><<<grid_for(a.numel, kBlock), kBlock, 0, s>>>(a, f);
  CUDA_CHECK_LAUNCH();
}

template <class A>
__device__ __forceinline__ A apply_unary(UnaryOp op, A x, A alpha, A beta) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Tanh: return tanh(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return A(1) / sqrt(x);
    case UnaryOp::Relu: return x > A(0) ? x : A(0);
    case UnaryOp::Gelu: {
      A u = A(kSqrt2OverPi) * (x + A(kGeluC) * x * x * x);
      return A(0.5) * x * (A(1) + tanh(u));
    }
    case UnaryOp::Abs: return fabs(x);
    case UnaryOp::Sigmoid: return A(1) / (A(1) + exp(-x));
    case UnaryOp::Square: return x * x;
    case UnaryOp::AddScalar: return x + alpha;
    case UnaryOp::MulScalar: return x * alpha;
    case UnaryOp::PowScalar: return pow(x, alpha);
    case UnaryOp::RSubScalar: return alpha - x;
    case UnaryOp::RDivScalar: return alpha / x;
    case UnaryOp::Clamp: return min(max(x, alpha), beta);
  }
  return x;
}

template <class A>
__device__ __forceinline__ A apply_binary(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return pow(a, b);
    case BinaryOp::Maximum: return max(a, b);
    case BinaryOp::Minimum: return min(a, b);
    case BinaryOp::GeluBackward: {
      A u = A(kSqrt2OverPi) * (b + A(kGeluC) * b * b * b);
      A t = tanh(u);
      A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluC) * b * b);
      return a * (A(0.5) * (A(1) + t) + A(0.5) * b * (A(1) - t * t) * du);
    }
    case BinaryOp::ReluBackward: return b > A(0) ? a : A(0);
    case BinaryOp::TanhBackward: return a * (A(1) - b * b);
    default: return A(0);
  }
}

template <class T>
__device__ __forceinline__ bool apply_compare(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    default: return a >= b;
  }
}

// Per-element functors (nvcc does not allow __device__ lambdas inside the dtype-visiting lambdas).
template <class T>
struct FillFn {
  T* o; T v;
  __device__ void operator()(const int64_t (&off)[1]) const { o[off[0]] = v; }
};
template <class D, class S>
struct CopyFn {
  D* o; const S* x;
  __device__ void operator()(const int64_t (&off)[2]) const { o[off[0]] = convert<D>(x[off[1]]); }
};
template <class T>
struct UnaryFn {
  T* o; const T* x; UnaryOp op; acc_t<T> alpha, beta;
  __device__ void operator()(const int64_t (&off)[2]) const {
    o[off[0]] = from_acc<T>(apply_unary<acc_t<T>>(op, to_acc(x[off[1]]), alpha, beta));
  }
};
template <class T>
struct BinaryFn {
  T* o; const T* a; const T* b; BinaryOp op;
  __device__ void operator()(const int64_t (&off)[3]) const {
    o[off[0]] = from_acc<T>(apply_binary<acc_t<T>>(op, to_acc(a[off[1]]), to_acc(b[off[2]])));
  }
};
template <class T>
struct CompareFn {
  bool* o; const T* a; const T* b; BinaryOp op;
  __device__ void operator()(const int64_t (&off)[3]) const {
    if constexpr (is_half_v<T>) o[off[0]] = apply_compare(op, to_acc(a[off[1]]), to_acc(b[off[2]]));
    else o[off[0]] = apply_compare(op, a[off[1]], b[off[2]]);
  }
};
template <class T>
struct WhereFn {
  T* o; const bool* c; const T* a; const T* b;
  __device__ void operator()(const int64_t (&off)[4]) const {
    o[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
};

bool is_compare(BinaryOp op) { return op >= BinaryOp::Eq && op <= BinaryOp::Ge; }

template <class Fn>
decltype(auto) visit_math(DType dt, const char* op, Fn&& fn) {
  if (dt == DType::F16) return fn.template operator()<f16>();
  return visit_cuda_float(dt, op, std::forward<Fn>(fn));
}
}  // namespace

void CudaBackend::fill(const Tensor& out, double value) {
  auto args = make_strided_args<1>({&out}, "fill");
  cudaStream_t s = stream_for(out);
  visit_cuda_dtype(out.dtype(), [&]<class T>() {
    T* o = static_cast<T*>(out.raw_data());
    T v;
    if constexpr (std::is_same_v<T, bool>) v = value != 0.0;
    else if constexpr (is_half_v<T>) v = T(float(value));
    else v = static_cast<T>(value);
    launch_strided(args, s, FillFn<T>{o, v});
  });
}

void CudaBackend::copy(const Tensor& dst, const Tensor& src) {
  LOOM_INTERNAL_ASSERT(dst.shape() == src.shape(), "copy shapes ", dst.shape(), " vs ", src.shape());
  LOOM_CHECK(src.device() == dst.device(), "copy: expected src on ", dst.device().str(), ", got ",
             src.device().str());
  auto args = make_strided_args<2>({&dst, &src}, "copy");
  cudaStream_t s = stream_for(dst);
  visit_cuda_dtype(dst.dtype(), [&]<class D>() {
    visit_cuda_dtype(src.dtype(), [&]<class S>() {
      D* o = static_cast<D*>(dst.raw_data());
      const S* x = static_cast<const S*>(src.raw_data());
      if (std::is_same_v<D, S> && args.contiguous) {
        CUDA_CHECK(cudaMemcpyAsync(o, x, size_t(args.numel) * sizeof(D),
                                   cudaMemcpyDeviceToDevice, s));
        return;
      }
      launch_strided(args, s, CopyFn<D, S>{o, x});
    });
  });
}

void CudaBackend::unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha,
                        double beta) {
  auto args = make_strided_args<2>({&out, &x}, unary_op_name(op));
  LOOM_CHECK(out.dtype() == x.dtype(), unary_op_name(op), ": expected out dtype ",
             dtype_name(x.dtype()), ", got ", dtype_name(out.dtype()));
  cudaStream_t s = stream_for(out);
  visit_math(out.dtype(), unary_op_name(op), [&]<class T>() {
    using A = acc_t<T>;
    T* o = static_cast<T*>(out.raw_data());
    const T* in = static_cast<const T*>(x.raw_data());
    launch_strided(args, s, UnaryFn<T>{o, in, op, A(alpha), A(beta)});
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  LOOM_CHECK(a.dtype() == b.dtype(), name, ": expected operands of one dtype, got ",
             dtype_name(a.dtype()), " and ", dtype_name(b.dtype()));
  auto args = make_strided_args<3>({&out, &a, &b}, name);
  cudaStream_t s = stream_for(out);
  if (is_compare(op)) {
    LOOM_CHECK(out.dtype() == DType::Bool, name, ": expected a bool output, got ",
               dtype_name(out.dtype()));
    visit_cuda_dtype(a.dtype(), [&]<class T>() {
      bool* o = static_cast<bool*>(out.raw_data());
      const T* pa = static_cast<const T*>(a.raw_data());
      const T* pb = static_cast<const T*>(b.raw_data());
      launch_strided(args, s, CompareFn<T>{o, pa, pb, op});
    });
    return;
  }
  LOOM_CHECK(out.dtype() == a.dtype(), name, ": expected out dtype ", dtype_name(a.dtype()),
             ", got ", dtype_name(out.dtype()));
  visit_math(out.dtype(), name, [&]<class T>() {
    T* o = static_cast<T*>(out.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    launch_strided(args, s, BinaryFn<T>{o, pa, pb, op});
  });
}

void CudaBackend::where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  LOOM_CHECK(cond.dtype() == DType::Bool, "where: expected a bool condition, got ",
             dtype_name(cond.dtype()));
  LOOM_CHECK(a.dtype() == out.dtype() && b.dtype() == out.dtype(), "where: expected a and b of ",
             "dtype ", dtype_name(out.dtype()), ", got ", dtype_name(a.dtype()), " and ",
             dtype_name(b.dtype()));
  auto args = make_strided_args<4>({&out, &cond, &a, &b}, "where");
  cudaStream_t s = stream_for(out);
  visit_cuda_dtype(out.dtype(), [&]<class T>() {
    T* o = static_cast<T*>(out.raw_data());
    const bool* c = static_cast<const bool*>(cond.raw_data());
    const T* pa = static_cast<const T*>(a.raw_data());
    const T* pb = static_cast<const T*>(b.raw_data());
    launch_strided(args, s, WhereFn<T>{o, c, pa, pb});
  });
}

namespace {
// One element of a random fill, computed exactly as CpuRandom.cpp's compiled code does: GCC
// (C++ mode, -mfma) contracts a + (b - a) * u and a + b * n into one FMA, so we use __fma_rn
// explicitly (and __dadd_rn for b - a) instead of leaving the choice to nvcc.
template <class T>
__global__ void fill_random_kernel(T* out, int64_t n, RandomKind kind, uint64_t seed,
                                   uint64_t offset, double a, double b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    double v;
    if (kind == RandomKind::Uniform) {
      v = __fma_rn(__dadd_rn(b, -a), philox::uniform_at(seed, offset, uint64_t(i)), a);
    } else if (kind == RandomKind::Normal) {
      v = __fma_rn(b, philox::normal_at(seed, offset, uint64_t(i)), a);
    } else {
      v = philox::uniform_at(seed, offset, uint64_t(i)) < a ? 1.0 : 0.0;
    }
    if constexpr (std::is_same_v<T, double>) out[i] = v;
    else out[i] = from_acc<T>(static_cast<float>(v));
  }
}
}  // namespace

void CudaBackend::fill_random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset,
                              double a, double b) {
  LOOM_INTERNAL_ASSERT(out.is_contiguous(), "fill_random needs a contiguous output");
  const int64_t n = out.numel();
  if (n == 0) return;
  cudaStream_t s = stream_for(out);
  visit_math(out.dtype(), "fill_random", [&]<class T>() {
    fill_random_kernel<T><<<grid_for(n, kBlock), kBlock, 0, s>>>(static_cast<T*>(out.raw_data()),
                                                                 n, kind, seed, offset, a, b);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda

// CUDA kernels of the Llama family's ops (Backend.h: RMSNorm, rotary embedding, SwiGLU): one block
// per row for RMSNorm (block sums in the accumulation type; dweight summed per column over the
// rows in a fixed order), one thread per rotated pair for rope and per output element for SwiGLU.
// They compute what core/backend/cpu/ref/LlamaRef.cpp defines. bf16 inputs take f32 rope tables
// and an f32 rstd (the ops layer allocates them so).
#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

namespace {

constexpr int kBlock = 256;

int row_grid(int64_t rows) { return int(rows < 65535 * 8 ? rows : 65535 * 8); }

// rstd: f32, f64 or bf16 whatever x is (Backend.h).
struct SidePtr {
  void* p = nullptr;
  DType dt = DType::F32;
};
SidePtr side_ptr(const Tensor& t, const char* op) {
  if (!t.defined()) return {};
  LOOM_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::BF16, op,
             ": expected an f32/f64/bf16 rstd, got ", dtype_name(t.dtype()));
  return {t.raw_data(), t.dtype()};
}
__device__ __forceinline__ double load_side(SidePtr a, int64_t i) {
  if (a.dt == DType::F32) return static_cast<const float*>(a.p)[i];
  if (a.dt == DType::F64) return static_cast<const double*>(a.p)[i];
  return __bfloat162float(static_cast<const bf16*>(a.p)[i]);
}
__device__ __forceinline__ void store_side(SidePtr a, int64_t i, double v) {
  if (!a.p) return;
  if (a.dt == DType::F32) static_cast<float*>(a.p)[i] = float(v);
  else if (a.dt == DType::F64) static_cast<double*>(a.p)[i] = v;
  else static_cast<bf16*>(a.p)[i] = __float2bfloat16_rn(float(v));
}

// The rope tables' element type for input type T (f32 for bf16, else T).
template <class T> using table_t = std::conditional_t<std::is_same_v<T, bf16>, float, T>;

template <class T>
__global__ void rmsnorm_forward_kernel(T* y, SidePtr rstd, const T* x, const T* w, int64_t rows,
                                       int64_t C, double eps) {
  using A = acc_t<T>;
  __shared__ A red[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    A ss = 0;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      const A v = to_acc(xr[j]);
      ss += v * v;
    }
    const A rs = A(1) / sqrt(block_reduce<A, false>(ss, red) / A(C) + A(eps));
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
      y[r * C + j] = from_acc<T>(to_acc(xr[j]) * rs * (w ? to_acc(w[j]) : A(1)));
    if (threadIdx.x == 0) store_side(rstd, r, double(rs));
  }
}

// With xhat = x rstd and g = dy w: dx = rstd (g - xhat mean(g xhat)).
template <class T>
__global__ void rmsnorm_dx_kernel(T* dx, const T* dy, const T* x, const T* w, SidePtr rstd,
                                  int64_t rows, int64_t C) {
  using A = acc_t<T>;
  __shared__ A red[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const A rs = A(load_side(rstd, r));
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    A sgx = 0;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x)
      sgx += to_acc(dyr[j]) * (w ? to_acc(w[j]) : A(1)) * to_acc(xr[j]) * rs;
    const A mean_gx = block_reduce<A, false>(sgx, red) / A(C);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      const A g = to_acc(dyr[j]) * (w ? to_acc(w[j]) : A(1)), xh = to_acc(xr[j]) * rs;
      dx[r * C + j] = from_acc<T>(rs * (g - xh * mean_gx));
    }
  }
}

// dweight[c] = sum over rows of dy xhat, one thread per column, rows in order.
template <class T>
__global__ void rmsnorm_dw_kernel(T* dw, const T* dy, const T* x, SidePtr rstd, int64_t rows,
                                  int64_t C) {
  using A = acc_t<T>;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    A s = 0;
    for (int64_t r = 0; r < rows; ++r)
      s += to_acc(dy[r * C + c]) * to_acc(x[r * C + c]) * A(load_side(rstd, r));
    dw[c] = from_acc<T>(s);
  }
}

// One thread per (row, j) pair of a (B,T,H,D) tensor: rows = B T H, h = D / 2.
template <class T>
__global__ void rope_kernel(T* y, const T* x, const table_t<T>* cos, const table_t<T>* sin,
                            int64_t rows, int64_t T_, int64_t H, int64_t h, bool inverse) {
  using A = acc_t<T>;
  const int64_t n = rows * h;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / h, j = i % h, t = (row / H) % T_;
    const A c = to_acc(cos[t * h + j]), sn = to_acc(sin[t * h + j]), s = inverse ? -sn : sn;
    const T* xr = x + row * 2 * h;
    const A x1 = to_acc(xr[j]), x2 = to_acc(xr[j + h]);
    T* yr = y + row * 2 * h;
    yr[j] = from_acc<T>(x1 * c - x2 * s);
    yr[j + h] = from_acc<T>(x2 * c + x1 * s);
  }
}

template <class A>
__device__ __forceinline__ A sigmoid(A z) {
  return A(1) / (A(1) + exp(-z));
}

template <class T>
__global__ void swiglu_forward_kernel(T* y, const T* a, int64_t rows, int64_t F) {
  using A = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * F;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F, j = i % F;
    const A g = to_acc(a[r * 2 * F + j]), u = to_acc(a[r * 2 * F + F + j]);
    y[i] = from_acc<T>(g * sigmoid(g) * u);
  }
}

// silu'(g) = s + g s (1 - s) with s = sigmoid(g).
template <class T>
__global__ void swiglu_backward_kernel(T* da, const T* dy, const T* a, int64_t rows, int64_t F) {
  using A = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * F;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / F, j = i % F;
    const A g = to_acc(a[r * 2 * F + j]), u = to_acc(a[r * 2 * F + F + j]);
    const A d = to_acc(dy[i]), s = sigmoid(g);
    da[r * 2 * F + j] = from_acc<T>(d * u * (s + g * s * (A(1) - s)));
    da[r * 2 * F + F + j] = from_acc<T>(d * g * s);
  }
}

template <class T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

}  // namespace

void CudaBackend::rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x,
                                  const Tensor& weight, double eps) {
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(y);
  const SidePtr pr = side_ptr(rstd, "rmsnorm");
  visit_cuda_float(x.dtype(), "rmsnorm", [&]<class T>() {
    rmsnorm_forward_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
        static_cast<T*>(y.raw_data()), pr, cptr<T>(x), cptr<T>(weight), rows, C, eps);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                                   const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  cudaStream_t s = stream_for(dy);
  const SidePtr pr = side_ptr(rstd, "rmsnorm_backward");
  visit_cuda_float(x.dtype(), "rmsnorm_backward", [&]<class T>() {
    if (dx.defined() && rows > 0) {
      rmsnorm_dx_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
          static_cast<T*>(dx.raw_data()), cptr<T>(dy), cptr<T>(x), cptr<T>(weight), pr, rows, C);
      CUDA_CHECK_LAUNCH();
    }
    if (dweight.defined() && C > 0) {
      rmsnorm_dw_kernel<T><<<grid_for(C, kBlock), kBlock, 0, s>>>(
          static_cast<T*>(dweight.raw_data()), cptr<T>(dy), cptr<T>(x), pr, rows, C);
      CUDA_CHECK_LAUNCH();
    }
  });
}

void CudaBackend::rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin,
                       bool inverse) {
  const int64_t T_ = x.size(1), H = x.size(2), h = x.size(3) / 2;
  const int64_t rows = h ? x.numel() / (2 * h) : 0;
  if (rows == 0 || h == 0) return;
  cudaStream_t s = stream_for(y);
  visit_cuda_float(x.dtype(), "rope", [&]<class T>() {
    rope_kernel<T><<<grid_for(rows * h, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(y.raw_data()), cptr<T>(x), cptr<table_t<T>>(cos), cptr<table_t<T>>(sin),
        rows, T_, H, h, inverse);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::swiglu_forward(const Tensor& y, const Tensor& a) {
  const int64_t F = y.size(-1), rows = F ? y.numel() / F : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(y);
  visit_cuda_float(a.dtype(), "swiglu", [&]<class T>() {
    swiglu_forward_kernel<T><<<grid_for(rows * F, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(y.raw_data()), cptr<T>(a), rows, F);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a) {
  const int64_t F = dy.size(-1), rows = F ? dy.numel() / F : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(da);
  visit_cuda_float(a.dtype(), "swiglu_backward", [&]<class T>() {
    swiglu_backward_kernel<T><<<grid_for(rows * F, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(da.raw_data()), cptr<T>(dy), cptr<T>(a), rows, F);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda

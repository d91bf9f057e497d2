// Row-wise neural-network kernels, one block per row: softmax / log-softmax forward and backward,
// layernorm forward (16-byte vector loads when rows are aligned) and backward (dweight/dbias in
// two deterministic passes: fixed row chunks, then chunks summed in order), and fused
// cross-entropy (log-sum-exp per row; backward recomputes the probabilities, none are stored).
#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

namespace {
constexpr int kBlock = 256;

// A side tensor (lse, mean, rstd, loss, dloss) may be f32, f64 or bf16 independently of the main
// dtype.
struct AnyPtr {
  void* p = nullptr;
  DType dt = DType::F32;
};
AnyPtr any_ptr(const Tensor& t, const char* op) {
  if (!t.defined()) return {};
  LOOM_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::BF16, op,
             ": expected an f32/f64/bf16 side tensor, got ", dtype_name(t.dtype()));
  return {t.raw_data(), t.dtype()};
}
__device__ __forceinline__ double load_any(AnyPtr a, int64_t i) {
  if (a.dt == DType::F32) return static_cast<const float*>(a.p)[i];
  if (a.dt == DType::F64) return static_cast<const double*>(a.p)[i];
  return __bfloat162float(static_cast<const bf16*>(a.p)[i]);
}
__device__ __forceinline__ void store_any(AnyPtr a, int64_t i, double v) {
  if (!a.p) return;
  if (a.dt == DType::F32) static_cast<float*>(a.p)[i] = float(v);
  else if (a.dt == DType::F64) static_cast<double*>(a.p)[i] = v;
  else static_cast<bf16*>(a.p)[i] = __float2bfloat16_rn(float(v));
}

int row_grid(int64_t rows) { return int(rows < 65535 * 8 ? rows : 65535 * 8); }

// ---- softmax -------------------------------------------------------------------------------
template <class T>
__global__ void softmax_forward_kernel(T* y, const T* x, int64_t rows, int64_t cols, bool log_out) {
  using A = acc_t<T>;
  __shared__ A red[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    A m = A(-INFINITY);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = max(m, to_acc(xr[j]));
    m = block_reduce<A, true>(m, red);
    A sum = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += exp(to_acc(xr[j]) - m);
    sum = block_reduce<A, false>(sum, red);
    const A lsum = log(sum), inv = A(1) / sum;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      A z = to_acc(xr[j]) - m;
      yr[j] = from_acc<T>(log_out ? z - lsum : exp(z) * inv);
    }
  }
}

template <class T>
__global__ void softmax_backward_kernel(T* dx, const T* dy, const T* y, int64_t rows,
                                        int64_t cols, bool log_out) {
  using A = acc_t<T>;
  __shared__ A red[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* dyr = dy + r * cols;
    const T* yr = y + r * cols;
    A s = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      s += log_out ? to_acc(dyr[j]) : to_acc(dyr[j]) * to_acc(yr[j]);
    s = block_reduce<A, false>(s, red);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      A g = to_acc(dyr[j]), yy = to_acc(yr[j]);
      dx[r * cols + j] = from_acc<T>(log_out ? g - exp(yy) * s : yy * (g - s));
    }
  }
}
}  // namespace

void CudaBackend::softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1), rows = cols ? x.numel() / cols : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(y);
  visit_cuda_float(x.dtype(), "softmax", [&]<class T>() {
    softmax_forward_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
        static_cast<T*>(y.raw_data()), static_cast<const T*>(x.raw_data()), rows, cols, log);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  const int64_t cols = y.dim() == 0 ? 1 : y.size(-1), rows = cols ? y.numel() / cols : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(dx);
  visit_cuda_float(y.dtype(), "softmax_backward", [&]<class T>() {
    softmax_backward_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
        static_cast<T*>(dx.raw_data()), static_cast<const T*>(dy.raw_data()),
        static_cast<const T*>(y.raw_data()), rows, cols, log);
    CUDA_CHECK_LAUNCH();
  });
}

// ---- layernorm -----------------------------------------------------------------------------
namespace {
// V elements of T loaded / stored as one 16-byte transaction when V * sizeof(T) == 16.
template <class T, int V>
struct alignas(sizeof(T) * V) Pack { T v[V]; };

template <class T, int V>
__global__ void layernorm_forward_kernel(T* y, AnyPtr mean, AnyPtr rstd, const T* x,
                                         const T* w, const T* b, int64_t rows, int64_t C,
                                         double eps) {
  using A = acc_t<T>;
  using P = Pack<T, V>;
  __shared__ A red[33];
  const int64_t packs = C / V;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const P* xr = reinterpret_cast<const P*>(x + r * C);
    P* yr = reinterpret_cast<P*>(y + r * C);
    A s = 0;
    for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
      P p = xr[j];
      for (int k = 0; k < V; ++k) s += to_acc(p.v[k]);
    }
    const A mu = block_reduce<A, false>(s, red) / A(C);
    A q = 0;
    for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
      P p = xr[j];
      for (int k = 0; k < V; ++k) { A d = to_acc(p.v[k]) - mu; q += d * d; }
    }
    const A rs = A(1) / sqrt(block_reduce<A, false>(q, red) / A(C) + A(eps));
    for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
      P p = xr[j], o;
      P pw = w ? reinterpret_cast<const P*>(w)[j] : P{};
      P pb = b ? reinterpret_cast<const P*>(b)[j] : P{};
      for (int k = 0; k < V; ++k) {
        A v = (to_acc(p.v[k]) - mu) * rs * (w ? to_acc(pw.v[k]) : A(1));
        o.v[k] = from_acc<T>(b ? v + to_acc(pb.v[k]) : v);
      }
      yr[j] = o;
    }
    if (threadIdx.x == 0) { store_any(mean, r, double(mu)); store_any(rstd, r, double(rs)); }
  }
}

template <class T>
__global__ void layernorm_dx_kernel(T* dx, const T* dy, const T* x, const T* w, AnyPtr mean,
                                    AnyPtr rstd, int64_t rows, int64_t C) {
  using A = acc_t<T>;
  __shared__ A red[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const A mu = A(load_any(mean, r)), rs = A(load_any(rstd, r));
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    A sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      A g = to_acc(dyr[j]) * (w ? to_acc(w[j]) : A(1)), xh = (to_acc(xr[j]) - mu) * rs;
      sg += g;
      sgx += g * xh;
    }
    sg = block_reduce<A, false>(sg, red) / A(C);
    sgx = block_reduce<A, false>(sgx, red) / A(C);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      A g = to_acc(dyr[j]) * (w ? to_acc(w[j]) : A(1)), xh = (to_acc(xr[j]) - mu) * rs;
      dx[r * C + j] = from_acc<T>(rs * (g - sg - xh * sgx));
    }
  }
}

constexpr int kLnChunk = 64;  // rows per partial sum of dweight/dbias

// Block (32, 8): 32 columns x 8 row lanes over one chunk of rows; fixed-order sums per column.
template <class T>
__global__ void layernorm_dwb_partial_kernel(acc_t<T>* pw, acc_t<T>* pb, const T* dy, const T* x,
                                             AnyPtr mean, AnyPtr rstd, int64_t rows, int64_t C) {
  using A = acc_t<T>;
  __shared__ A sw[8][33], sb[8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x, chunk = blockIdx.y;
  A aw = 0, ab = 0;
  if (c < C) {
    for (int64_t r = chunk * kLnChunk + threadIdx.y; r < min(rows, (chunk + 1) * kLnChunk); r += 8) {
      A g = to_acc(dy[r * C + c]);
      aw += g * (to_acc(x[r * C + c]) - A(load_any(mean, r))) * A(load_any(rstd, r));
      ab += g;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < 8; ++k) { aw += sw[k][threadIdx.x]; ab += sb[k][threadIdx.x]; }
    pw[chunk * C + c] = aw;
    pb[chunk * C + c] = ab;
  }
}

template <class T>
__global__ void layernorm_dwb_final_kernel(T* dw, T* db, const acc_t<T>* pw, const acc_t<T>* pb,
                                           int64_t chunks, int64_t C) {
  using A = acc_t<T>;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    A aw = 0, ab = 0;
    for (int64_t k = 0; k < chunks; ++k) { aw += pw[k * C + c]; ab += pb[k * C + c]; }
    if (dw) dw[c] = from_acc<T>(aw);
    if (db) db[c] = from_acc<T>(ab);
  }
}

bool aligned16(const Tensor& t) {
  return !t.defined() || reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
}
}  // namespace

void CudaBackend::layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd,
                                    const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    double eps) {
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(y);
  AnyPtr pm = any_ptr(mean, "layernorm"), pr = any_ptr(rstd, "layernorm");
  visit_cuda_float(x.dtype(), "layernorm", [&]<class T>() {
    constexpr int kV = 16 / int(sizeof(T));
    T* py = static_cast<T*>(y.raw_data());
    const T* px = static_cast<const T*>(x.raw_data());
    const T* pw = weight.defined() ? static_cast<const T*>(weight.raw_data()) : nullptr;
    const T* pb = bias.defined() ? static_cast<const T*>(bias.raw_data()) : nullptr;
    bool vec = C % kV == 0 && aligned16(y) && aligned16(x) && aligned16(weight) && aligned16(bias);
    if (vec) {
      layernorm_forward_kernel<T, kV><<<row_grid(rows), kBlock, 0, s>>>(py, pm, pr, px, pw, pb,
                                                                        rows, C, eps);
    } else {
      layernorm_forward_kernel<T, 1><<<row_grid(rows), kBlock, 0, s>>>(py, pm, pr, px, pw, pb,
                                                                       rows, C, eps);
    }
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                     const Tensor& dy, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd) {
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  cudaStream_t s = stream_for(dy);
  AnyPtr pm = any_ptr(mean, "layernorm_backward"), pr = any_ptr(rstd, "layernorm_backward");
  visit_cuda_float(x.dtype(), "layernorm_backward", [&]<class T>() {
    using A = acc_t<T>;
    const T* pdy = static_cast<const T*>(dy.raw_data());
    const T* px = static_cast<const T*>(x.raw_data());
    if (dx.defined() && rows > 0) {
      layernorm_dx_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
          static_cast<T*>(dx.raw_data()), pdy, px,
          weight.defined() ? static_cast<const T*>(weight.raw_data()) : nullptr, pm,
          pr, rows, C);
      CUDA_CHECK_LAUNCH();
    }
    if (!dweight.defined() && !dbias.defined()) return;
    T* pdw = dweight.defined() ? static_cast<T*>(dweight.raw_data()) : nullptr;
    T* pdb = dbias.defined() ? static_cast<T*>(dbias.raw_data()) : nullptr;
    const int64_t chunks = (rows + kLnChunk - 1) / kLnChunk;
    DType adt = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    Tensor part = Tensor::empty({2, chunks > 0 ? chunks : 1, C}, adt, dy.device());
    A* ppw = static_cast<A*>(part.raw_data());
    A* ppb = ppw + (chunks > 0 ? chunks : 1) * C;
    if (chunks > 0) {
      dim3 grid(unsigned((C + 31) / 32), unsigned(chunks));
      layernorm_dwb_partial_kernel<T><<<grid, dim3(32, 8), 0, s>>>(ppw, ppb, pdy, px, pm, pr,
                                                                   rows, C);
      CUDA_CHECK_LAUNCH();
    }
    layernorm_dwb_final_kernel<T><<<grid_for(C, 256), 256, 0, s>>>(pdw, pdb, ppw, ppb, chunks, C);
    CUDA_CHECK_LAUNCH();
  });
}

// ---- cross-entropy ---------------------------------------------------------------------------
namespace {
template <class T>
__global__ void cross_entropy_forward_kernel(AnyPtr loss, AnyPtr lse, const T* logits,
                                             const int64_t* targets, int64_t rows, int64_t V,
                                             int64_t ignore, int* bad) {
  using A = acc_t<T>;
  __shared__ A red[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = logits + r * V;
    A m = A(-INFINITY);
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = max(m, to_acc(xr[j]));
    m = block_reduce<A, true>(m, red);
    A sum = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) sum += exp(to_acc(xr[j]) - m);
    sum = block_reduce<A, false>(sum, red);
    if (threadIdx.x == 0) {
      const A l = m + log(sum);
      const int64_t t = targets[r];
      A out = 0;
      if (t != ignore) {
        if (t < 0 || t >= V) *bad = 1;
        else out = l - to_acc(xr[t]);
      }
      store_any(loss, r, double(out));
      store_any(lse, r, double(l));
    }
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(T* dlogits, AnyPtr dloss, const T* logits,
                                              const int64_t* targets, AnyPtr lse, int64_t rows,
                                              int64_t V, int64_t ignore) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t t = targets[r];
    const bool skip = t == ignore || t < 0 || t >= V;
    const A g = skip ? A(0) : A(load_any(dloss, r)), l = A(load_any(lse, r));
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      A p = skip ? A(0) : exp(to_acc(logits[r * V + j]) - l);
      dlogits[r * V + j] = from_acc<T>(g * (p - (j == t ? A(1) : A(0))));
    }
  }
}
}  // namespace

void CudaBackend::cross_entropy_forward(const Tensor& loss, const Tensor& lse,
                                        const Tensor& logits, const Tensor& targets,
                                        int64_t ignore_index) {
  LOOM_CHECK(targets.dtype() == DType::I64, "cross_entropy: expected i64 targets, got ",
             dtype_name(targets.dtype()));
  const int64_t V = logits.size(-1), rows = V ? logits.numel() / V : 0;
  if (rows == 0) return;
  const int dev = logits.device().index;
  cudaStream_t s = stream_for(logits);
  AnyPtr pl = any_ptr(lse, "cross_entropy"), ploss = any_ptr(loss, "cross_entropy");
  visit_cuda_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    cross_entropy_forward_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
        ploss, pl, static_cast<const T*>(logits.raw_data()),
        static_cast<const int64_t*>(targets.raw_data()), rows, V, ignore_index, error_flag(dev));
    CUDA_CHECK_LAUNCH();
  });
  check_error_flag(dev, s, detail::str_cat("cross_entropy: expected targets in [0, ", V,
                                           ") or ignore_index ", ignore_index,
                                           ", got a target outside that range"));
}

void CudaBackend::cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss,
                                         const Tensor& logits, const Tensor& targets,
                                         const Tensor& lse, int64_t ignore_index) {
  const int64_t V = logits.size(-1), rows = V ? logits.numel() / V : 0;
  if (rows == 0) return;
  cudaStream_t s = stream_for(logits);
  AnyPtr pd = any_ptr(dloss, "cross_entropy_backward"), pl = any_ptr(lse, "cross_entropy_backward");
  visit_cuda_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    cross_entropy_backward_kernel<T><<<row_grid(rows), kBlock, 0, s>>>(
        static_cast<T*>(dlogits.raw_data()), pd, static_cast<const T*>(logits.raw_data()),
        static_cast<const int64_t*>(targets.raw_data()), pl, rows, V, ignore_index);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda

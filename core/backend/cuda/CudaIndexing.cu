// Indexing kernels: index_select and gather (one thread per output element), index_add (indices
// sorted with CUB radix sort, which is stable, so each target row sums its sources in ascending
// source order) and scatter_add (one thread per (outer, inner) column walking the sources in
// order). No float atomics anywhere: results are bitwise reproducible and follow the CPU's
// sequential order. Out-of-range indices raise ValueError after the kernel (one sync).
#include <cub/device/device_radix_sort.cuh>

#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

namespace {
constexpr int kBlock = 256;

template <class T>
__global__ void index_select_kernel(T* out, const T* x, const int64_t* index, int64_t outer,
                                    int64_t n, int64_t m, int64_t inner, int* bad) {
  const int64_t total = outer * m * inner;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = t % inner, j = (t / inner) % m, o = t / (inner * m);
    const int64_t i = index[j];
    if (i < 0 || i >= n) { *bad = 1; continue; }
    out[t] = x[(o * n + i) * inner + c];
  }
}

template <class T>
__global__ void gather_kernel(T* out, const T* x, const int64_t* index, int64_t outer, int64_t n,
                              int64_t m, int64_t inner, int* bad) {
  const int64_t total = outer * m * inner;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = t % inner, o = t / (inner * m);
    const int64_t i = index[t];
    if (i < 0 || i >= n) { *bad = 1; continue; }
    out[t] = x[(o * n + i) * inner + c];
  }
}

__global__ void iota_check_kernel(int64_t* vals, const int64_t* index, int64_t m, int64_t n,
                                  int* bad) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < m;
       j += int64_t(gridDim.x) * blockDim.x) {
    vals[j] = j;
    if (index[j] < 0 || index[j] >= n) *bad = 1;
  }
}

// keys: sorted target rows; vals: source rows in ascending order within equal keys. The thread
// at the head of each run of equal keys adds the run's sources to out, in order.
template <class T>
__global__ void index_add_runs_kernel(T* out, const T* src, const int64_t* keys,
                                      const int64_t* vals, int64_t outer, int64_t n, int64_t m,
                                      int64_t inner) {
  using A = acc_t<T>;
  const int64_t total = outer * m * inner;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = t % inner, p = (t / inner) % m, o = t / (inner * m);
    const int64_t key = keys[p];
    if (p > 0 && keys[p - 1] == key) continue;
    if (key < 0 || key >= n) continue;
    T* dst = out + (o * n + key) * inner + c;
    A acc = to_acc(*dst);
    for (int64_t q = p; q < m && keys[q] == key; ++q) acc += to_acc(src[(o * m + vals[q]) * inner + c]);
    *dst = from_acc<T>(acc);
  }
}

template <class T>
__global__ void scatter_add_kernel(T* out, const T* src, const int64_t* index, int64_t outer,
                                   int64_t n, int64_t m, int64_t inner, int* bad) {
  using A = acc_t<T>;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = t % inner, o = t / inner;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t e = (o * m + j) * inner + c, i = index[e];
      if (i < 0 || i >= n) { *bad = 1; continue; }
      T* dst = out + (o * n + i) * inner + c;
      *dst = from_acc<T>(to_acc(*dst) + to_acc(src[e]));
    }
  }
}

void check_index(const Tensor& index, const char* op) {
  LOOM_CHECK(index.dtype() == DType::I64, op, ": expected an i64 index, got ",
             dtype_name(index.dtype()));
}
std::string range_msg(const char* op, int64_t n) {
  return detail::str_cat(op, ": expected indices in [0, ", n, "), got an index outside that range");
}

template <class Fn>
decltype(auto) visit_index_dtype(DType dt, const char* op, Fn&& fn) {
  if (dt == DType::I64) return fn.template operator()<int64_t>();
  if (dt == DType::I32) return fn.template operator()<int32_t>();
  return visit_cuda_float(dt, op, std::forward<Fn>(fn));
}
}  // namespace

void CudaBackend::index_select(const Tensor& out, const Tensor& x, const Tensor& index,
                               int64_t outer, int64_t n, int64_t inner) {
  check_index(index, "index_select");
  const int64_t m = index.numel(), total = outer * m * inner;
  if (total == 0) return;
  const int dev = x.device().index;
  cudaStream_t s = stream_for(x);
  visit_index_dtype(x.dtype(), "index_select", [&]<class T>() {
    index_select_kernel<T><<<grid_for(total, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(out.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const int64_t*>(index.raw_data()), outer, n, m, inner, error_flag(dev));
    CUDA_CHECK_LAUNCH();
  });
  check_error_flag(dev, s, range_msg("index_select", n));
}

void CudaBackend::gather(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                         int64_t n, int64_t inner) {
  check_index(index, "gather");
  const int64_t total = index.numel(), m = outer * inner > 0 ? total / (outer * inner) : 0;
  if (total == 0) return;
  const int dev = x.device().index;
  cudaStream_t s = stream_for(x);
  visit_index_dtype(x.dtype(), "gather", [&]<class T>() {
    gather_kernel<T><<<grid_for(total, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(out.raw_data()), static_cast<const T*>(x.raw_data()),
        static_cast<const int64_t*>(index.raw_data()), outer, n, m, inner, error_flag(dev));
    CUDA_CHECK_LAUNCH();
  });
  check_error_flag(dev, s, range_msg("gather", n));
}

void CudaBackend::index_add(const Tensor& out, const Tensor& src, const Tensor& index,
                            int64_t outer, int64_t n, int64_t inner) {
  check_index(index, "index_add");
  const int64_t m = index.numel();
  if (m == 0 || outer * inner == 0) return;
  const int dev = out.device().index;
  cudaStream_t s = stream_for(out);
  const Device d = out.device();
  Tensor keys = Tensor::empty({m}, DType::I64, d), vals_in = Tensor::empty({m}, DType::I64, d),
         vals = Tensor::empty({m}, DType::I64, d);
  auto* pidx = static_cast<const int64_t*>(index.raw_data());
  auto* pk = static_cast<int64_t*>(keys.raw_data());
  auto* pvi = static_cast<int64_t*>(vals_in.raw_data());
  auto* pv = static_cast<int64_t*>(vals.raw_data());
  iota_check_kernel<<<grid_for(m, kBlock), kBlock, 0, s>>>(pvi, pidx, m, n, error_flag(dev));
  CUDA_CHECK_LAUNCH();
  check_error_flag(dev, s, range_msg("index_add", n));
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, pidx, pk, pvi, pv, m, 0, 64, s));
  Tensor temp = Tensor::empty({int64_t(temp_bytes / 8 + 1)}, DType::I64, d);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, pidx, pk, pvi, pv, m, 0,
                                             64, s));
  visit_cuda_float(out.dtype(), "index_add", [&]<class T>() {
    const int64_t total = outer * m * inner;
    index_add_runs_kernel<T><<<grid_for(total, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(out.raw_data()), static_cast<const T*>(src.raw_data()), pk, pv, outer, n,
        m, inner);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::scatter_add(const Tensor& out, const Tensor& src, const Tensor& index,
                              int64_t outer, int64_t n, int64_t inner) {
  check_index(index, "scatter_add");
  const int64_t total = index.numel(), m = outer * inner > 0 ? total / (outer * inner) : 0;
  if (total == 0) return;
  const int dev = out.device().index;
  cudaStream_t s = stream_for(out);
  visit_cuda_float(out.dtype(), "scatter_add", [&]<class T>() {
    scatter_add_kernel<T><<<grid_for(outer * inner, kBlock), kBlock, 0, s>>>(
        static_cast<T*>(out.raw_data()), static_cast<const T*>(src.raw_data()),
        static_cast<const int64_t*>(index.raw_data()), outer, n, m, inner, error_flag(dev));
    CUDA_CHECK_LAUNCH();
  });
  check_error_flag(dev, s, range_msg("scatter_add", n));
}

}  // namespace loom::cuda

// Shared helpers for the CUDA backend's .cu files: CUDA_CHECK (throws loom::Error with file:line
// and cudaGetErrorString, never exits), the device-side dtype visitor (loom dtypes -> CUDA types),
// float conversions for every storage type, strided-index structs (up to 8 dims) and small block
// reductions. Only core/backend/cuda/ includes this file.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <type_traits>

#include "core/backend/Backend.h"
#include "core/backend/cuda/CudaBackend.h"

#define CUDA_CHECK(expr) ::loom::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)

namespace loom::cuda {

[[noreturn]] void throw_cuda(cudaError_t err, const char* expr, const char* file, int line);
inline void check_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  if (err != cudaSuccess) [[unlikely]] throw_cuda(err, expr, file, line);
}
// Checks the last kernel launch (bad configuration etc.); asynchronous faults surface later.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// The compute stream of the tensor's device, after making that device current.
cudaStream_t stream_for(const Tensor& t);

// ---- dtype dispatch --------------------------------------------------------------------------
using bf16 = __nv_bfloat16;
using f16 = __half;

template <class Fn>
decltype(auto) visit_cuda_dtype(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    case DType::BF16: return fn.template operator()<bf16>();
    case DType::F16: return fn.template operator()<f16>();
    case DType::I32: return fn.template operator()<int32_t>();
    case DType::I64: return fn.template operator()<int64_t>();
    case DType::Bool: return fn.template operator()<bool>();
  }
  throw InternalError("visit_cuda_dtype: bad dtype");
}

// f32, bf16 and f64: the dtypes of the CUDA math kernels; anything else throws ValueError.
template <class Fn>
decltype(auto) visit_cuda_float(DType dt, const char* op, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    case DType::BF16: return fn.template operator()<bf16>();
    default: break;
  }
  throw ValueError(detail::str_cat(op, ": expected dtype f32, bf16 or f64 on device cuda, got ",
                                   dtype_name(dt)));
}

template <class T> inline constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
// Accumulation type: double for f64, float for everything else.
template <class T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
__device__ __forceinline__ acc_t<T> to_acc(T v) {
  if constexpr (std::is_same_v<T, bf16>) return __bfloat162float(v);
  else if constexpr (std::is_same_v<T, f16>) return __half2float(v);
  else return static_cast<acc_t<T>>(v);
}
template <class T, class A>
__device__ __forceinline__ T from_acc(A v) {
  if constexpr (std::is_same_v<T, bf16>) return __float2bfloat16_rn(float(v));
  else if constexpr (std::is_same_v<T, f16>) return __float2half_rn(float(v));
  else return static_cast<T>(v);
}

// The CPU backend's conversion rules (CpuCopy.cpp): 16-bit floats go through float, bool is != 0.
template <class D, class S>
__device__ __forceinline__ D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<D, bool>) {
    if constexpr (is_half_v<S>) return to_acc(s) != 0.0f;
    else return static_cast<float>(s) != 0.0f;
  } else if constexpr (is_half_v<D>) {
    if constexpr (is_half_v<S>) return from_acc<D>(to_acc(s));
    else return from_acc<D>(static_cast<float>(s));
  } else if constexpr (is_half_v<S>) {
    return static_cast<D>(to_acc(s));
  } else {
    return static_cast<D>(s);
  }
}

// ---- strided indexing ------------------------------------------------------------------------
inline constexpr int kMaxDims = 8;

// Coalesced geometry of N operands sharing one shape; strides in elements, innermost dim last.
template <int N>
struct StridedArgs {
  int ndim;
  int64_t size[kMaxDims];
  int64_t stride[N][kMaxDims];
  int64_t numel;
  bool contiguous;  // every operand dense in the same order: linear index == element offset
};

// Builds the args on the host (merges dims contiguous in every operand; drops size-1 dims).
// Throws ValueError naming `op` when more than kMaxDims dims remain.
template <int N>
StridedArgs<N> make_strided_args(const std::array<const Tensor*, N>& ts, const char* op) {
  StridedArgs<N> a{};
  const Shape& shape = ts[0]->shape();
  int nd = 0;
  int64_t sizes[64];
  int64_t st[N][64];
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < N && merge; ++k) merge = st[k][nd - 1] == ts[k]->strides()[d] * shape[d];
    if (merge) {
      sizes[nd - 1] *= shape[d];
      for (int k = 0; k < N; ++k) st[k][nd - 1] = ts[k]->strides()[d];
    } else {
      LOOM_CHECK(nd < kMaxDims, op, ": expected at most ", kMaxDims,
                 " non-mergeable dims on device cuda, got shape ", shape);
      sizes[nd] = shape[d];
      for (int k = 0; k < N; ++k) st[k][nd] = ts[k]->strides()[d];
      ++nd;
    }
  }
  a.ndim = nd;
  a.numel = 1;
  for (int d = 0; d < nd; ++d) {
    a.size[d] = sizes[d];
    a.numel *= sizes[d];
    for (int k = 0; k < N; ++k) a.stride[k][d] = st[k][d];
  }
  a.contiguous = true;
  for (int k = 0; k < N; ++k) a.contiguous = a.contiguous && (nd == 0 || (nd == 1 && st[k][0] == 1));
  return a;
}

// Element offsets of linear index i (row-major over the coalesced shape) for every operand.
template <int N>
__device__ __forceinline__ void strided_offsets(const StridedArgs<N>& a, int64_t i,
                                                int64_t (&off)[N]) {
  for (int k = 0; k < N; ++k) off[k] = 0;
  if (a.contiguous) {
    for (int k = 0; k < N; ++k) off[k] = i;
    return;
  }
  for (int d = a.ndim - 1; d >= 0; --d) {
    int64_t idx = i % a.size[d];
    i /= a.size[d];
    for (int k = 0; k < N; ++k) off[k] += idx * a.stride[k][d];
  }
}

inline int grid_for(int64_t n, int block) {
  int64_t g = (n + block - 1) / block;
  return int(g < 65535 * 16 ? (g < 1 ? 1 : g) : 65535 * 16);
}

// ---- warp / block reductions (fixed shuffle tree: deterministic) -----------------------------
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class A>
__device__ __forceinline__ A warp_max(A v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide sum/max for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
// `shared` needs 33 slots. NB: call from all threads of the block.
template <class A, bool kMax>
__device__ A block_reduce(A v, A* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    A w = lane < nwarps ? shared[lane] : (kMax ? A(-INFINITY) : A(0));
    w = kMax ? warp_max(w) : warp_sum(w);
    if (lane == 0) shared[32] = w;
  }
  __syncthreads();
  return shared[32];
}

// Device flag used by kernels that must report a user error (index out of range): 0 = ok.
// check_error_flag synchronises, reads and resets it, and throws ValueError(msg) if it was set.
int* error_flag(int device_index);
void check_error_flag(int device_index, cudaStream_t s, const std::string& msg);

}  // namespace loom::cuda

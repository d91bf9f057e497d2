// Deterministic reductions: x viewed as (outer, n, inner) -> out (outer, inner), with arg indices
// for Max/Min. inner == 1 uses one block per row and a fixed shuffle tree; a few long rows (the
// whole-tensor sums of clip_grad_norm) go grid-wide in two levels: fixed-size chunks reduced to
// partials by one block each, then one block per row combines the partials in a fixed tree.
// Otherwise one thread per output walks n in order. No atomics, and the chunking depends only on
// n (never on the device), so results are bitwise reproducible.
#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

namespace {
constexpr int kRowBlock = 256;
// Two-level path: rows of at least kSplitMin elements, when there are at most kSplitMaxRows rows.
// Chunks hold kChunk elements (more when a row would need over kMaxChunks chunks).
constexpr int64_t kChunk = 16384;
constexpr int64_t kMaxChunks = 4096;
constexpr int64_t kSplitMin = 2 * kChunk;
constexpr int64_t kSplitMaxRows = 64;

template <class A>
struct ValIdx { A v; int64_t i; };

// Combines two partial results: Sum adds; Max/Min keep the better value, the lower index on ties.
template <class A>
__device__ __forceinline__ ValIdx<A> combine(ReduceOp op, ValIdx<A> x, ValIdx<A> y) {
  if (op == ReduceOp::Sum) return {x.v + y.v, 0};
  if (y.i < 0) return x;
  if (x.i < 0) return y;
  bool take_y = op == ReduceOp::Max ? (y.v > x.v || (y.v == x.v && y.i < x.i))
                                    : (y.v < x.v || (y.v == x.v && y.i < x.i));
  return take_y ? y : x;
}

// Reduces xr[begin, end) with one block; thread 0 returns the result (index relative to xr).
template <class T>
__device__ ValIdx<acc_t<T>> block_reduce_range(const T* xr, int64_t begin, int64_t end,
                                              ReduceOp op, acc_t<T>* sv, int64_t* si) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  ValIdx<A> acc{A(0), -1};
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x)
    acc = combine(op, acc, {to_acc(xr[j]), j});
  for (int o = 16; o > 0; o >>= 1) {
    ValIdx<A> other{__shfl_xor_sync(0xffffffffu, acc.v, o), __shfl_xor_sync(0xffffffffu, acc.i, o)};
    acc = combine(op, acc, other);
  }
  __syncthreads();
  if (lane == 0) { sv[warp] = acc.v; si[warp] = acc.i; }
  __syncthreads();
  ValIdx<A> r{sv[0], si[0]};
  if (threadIdx.x == 0)
    for (int w = 1; w < int(blockDim.x >> 5); ++w) r = combine(op, r, {sv[w], si[w]});
  return r;
}

// Level 1: block (c, row) reduces chunk c of row `row` into part (outer, chunks).
template <class T>
__global__ void reduce_chunks_kernel(acc_t<T>* part_v, int64_t* part_i, const T* x, int64_t n,
                                     int64_t chunk, ReduceOp op) {
  __shared__ acc_t<T> sv[32];
  __shared__ int64_t si[32];
  const int64_t c = blockIdx.x, row = blockIdx.y, begin = c * chunk;
  const int64_t end = begin + chunk < n ? begin + chunk : n;
  ValIdx<acc_t<T>> r = block_reduce_range(x + row * n, begin, end, op, sv, si);
  if (threadIdx.x == 0) {
    part_v[row * gridDim.x + c] = r.v;
    part_i[row * gridDim.x + c] = r.i;
  }
}

// Level 2: one block per row combines its `chunks` partials in a fixed tree.
template <class T>
__global__ void reduce_partials_kernel(T* out, int64_t* indices, const acc_t<T>* part_v,
                                       const int64_t* part_i, int64_t chunks, ReduceOp op) {
  using A = acc_t<T>;
  __shared__ A sv[32];
  __shared__ int64_t si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = blockIdx.x;
  ValIdx<A> acc{A(0), -1};
  for (int64_t j = threadIdx.x; j < chunks; j += blockDim.x)
    acc = combine(op, acc, {part_v[row * chunks + j], part_i[row * chunks + j]});
  for (int o = 16; o > 0; o >>= 1) {
    ValIdx<A> other{__shfl_xor_sync(0xffffffffu, acc.v, o), __shfl_xor_sync(0xffffffffu, acc.i, o)};
    acc = combine(op, acc, other);
  }
  if (lane == 0) { sv[warp] = acc.v; si[warp] = acc.i; }
  __syncthreads();
  if (threadIdx.x == 0) {
    ValIdx<A> r{sv[0], si[0]};
    for (int w = 1; w < int(blockDim.x >> 5); ++w) r = combine(op, r, {sv[w], si[w]});
    out[row] = from_acc<T>(r.v);
    if (indices) indices[row] = r.i;
  }
}

template <class T>
__global__ void reduce_rows_kernel(T* out, int64_t* indices, const T* x, int64_t outer,
                                   int64_t n, ReduceOp op) {
  using A = acc_t<T>;
  __shared__ A sv[32];
  __shared__ int64_t si[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* xr = x + row * n;
    ValIdx<A> acc{A(0), -1};
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc = combine(op, acc, {to_acc(xr[j]), j});
    for (int o = 16; o > 0; o >>= 1) {
      ValIdx<A> other{__shfl_xor_sync(0xffffffffu, acc.v, o), __shfl_xor_sync(0xffffffffu, acc.i, o)};
      acc = combine(op, acc, other);
    }
    if (lane == 0) { sv[warp] = acc.v; si[warp] = acc.i; }
    __syncthreads();
    if (threadIdx.x == 0) {
      ValIdx<A> r{sv[0], si[0]};
      for (int w = 1; w < int(blockDim.x >> 5); ++w) r = combine(op, r, {sv[w], si[w]});
      out[row] = from_acc<T>(r.v);
      if (indices) indices[row] = r.i;
    }
    __syncthreads();
  }
}

template <class T>
__global__ void reduce_cols_kernel(T* out, int64_t* indices, const T* x, int64_t outer,
                                   int64_t n, int64_t inner, ReduceOp op) {
  using A = acc_t<T>;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, c = t % inner;
    const T* xp = x + o * n * inner + c;
    ValIdx<A> acc{A(0), -1};
    for (int64_t j = 0; j < n; ++j) acc = combine(op, acc, {to_acc(xp[j * inner]), j});
    out[t] = from_acc<T>(acc.v);
    if (indices) indices[t] = acc.i;
  }
}

// Grid-wide reduction of a few long rows (see the file comment); scratch partials come from the
// caching allocator and are released (stream-ordered) when the tensors go out of scope.
template <class T>
void reduce_two_level(T* out, int64_t* indices, const T* x, int64_t outer, int64_t n, ReduceOp op,
                      Device device, cudaStream_t s) {
  int64_t chunk = kChunk;
  if ((n + chunk - 1) / chunk > kMaxChunks) chunk = (n + kMaxChunks - 1) / kMaxChunks;
  const int64_t chunks = (n + chunk - 1) / chunk;
  const DType acc_dt = std::is_same_v<acc_t<T>, double> ? DType::F64 : DType::F32;
  Tensor part_v = Tensor::empty({outer * chunks}, acc_dt, device);
  Tensor part_i = Tensor::empty({outer * chunks}, DType::I64, device);
  auto* pv = static_cast<acc_t<T>*>(part_v.raw_data());
  auto* pi = static_cast<int64_t*>(part_i.raw_data());
  reduce_chunks_kernel<T><<<dim3(unsigned(chunks), unsigned(outer)), kRowBlock, 0, s>>>(
      pv, pi, x, n, chunk, op);
  CUDA_CHECK_LAUNCH();
  reduce_partials_kernel<T><<<unsigned(outer), kRowBlock, 0, s>>>(out, indices, pv, pi, chunks, op);
}
}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x,
                         int64_t outer, int64_t n, int64_t inner) {
  LOOM_INTERNAL_ASSERT(x.is_contiguous() && out.is_contiguous(), "reduce needs contiguous tensors");
  LOOM_CHECK(out.dtype() == x.dtype(), "reduce: expected out dtype ", dtype_name(x.dtype()),
             ", got ", dtype_name(out.dtype()));
  LOOM_CHECK(op == ReduceOp::Sum || n > 0, "reduce: expected a non-empty max/min dim, got n = 0");
  if (outer * inner == 0) return;
  int64_t* idx = nullptr;
  if (indices.defined() && op != ReduceOp::Sum) {
    LOOM_CHECK(indices.dtype() == DType::I64, "reduce: expected i64 indices, got ",
               dtype_name(indices.dtype()));
    idx = static_cast<int64_t*>(indices.raw_data());
  }
  cudaStream_t s = stream_for(out);
  visit_cuda_float(x.dtype(), "reduce", [&]<class T>() {
    T* o = static_cast<T*>(out.raw_data());
    const T* xp = static_cast<const T*>(x.raw_data());
    if (inner == 1 && n >= kSplitMin && outer <= kSplitMaxRows) {
      reduce_two_level<T>(o, idx, xp, outer, n, op, x.device(), s);
    } else if (inner == 1) {
      int grid = int(outer < 65535 * 8 ? outer : 65535 * 8);
      reduce_rows_kernel<T><<<grid, kRowBlock, 0, s>>>(o, idx, xp, outer, n, op);
    } else {
      reduce_cols_kernel<T><<<grid_for(outer * inner, 256), 256, 0, s>>>(o, idx, xp, outer, n,
                                                                          inner, op);
    }
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace loom::cuda

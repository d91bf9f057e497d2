// Flash attention in plain CUDA (no cuDNN): q,k,v,out (B,H,T,D), D <= 128. Forward: a block
// owns 32 queries (4 warps x 8 rows); K/V tiles of 32 keys are staged in shared memory; each lane
// scores one key, the warp keeps an online softmax (running max m, sum l) and each lane
// accumulates D/32 output dims; lse = m + log(l) is stored for backward. Backward recomputes P
// from lse in two kernels, one owning key tiles (dK, dV) and one owning query tiles (dQ), so every
// gradient element is written by exactly one thread: no atomics, bitwise deterministic.
// bf16 goes through cuBLASLt instead (tensor cores): per chunk of heads, f32 scores
// S = scale Q K^T, a row softmax to bf16 P, O = P V; backward recomputes S, dP = dO V^T, then P and
// dS = P (dP - rowsum(dO O)) scale, and dV = P^T dO, dQ = dS K, dK = dS^T Q. The (T,T) scratch
// lives only during the call (chunks of heads bound it to ~1 GiB); everything stays deterministic.
#include <algorithm>

#include "core/backend/cuda/CudaCommon.cuh"

namespace loom::cuda {

namespace {
constexpr int kTile = 32;     // queries per block and keys per tile
constexpr int kWarps = 4;     // each warp owns kTile / kWarps rows
constexpr int kRows = kTile / kWarps;
constexpr int kMaxD = 128;
constexpr int kDPerLane = kMaxD / 32;

struct AttnDims {
  int64_t Tq, Tk, D;
  double scale;
  bool causal;
};

struct AnyLse {
  void* p;
  DType dt;
};
__device__ __forceinline__ double load_lse(AnyLse a, int64_t i) {
  if (a.dt == DType::F32) return static_cast<const float*>(a.p)[i];
  if (a.dt == DType::F64) return static_cast<const double*>(a.p)[i];
  return __bfloat162float(static_cast<const bf16*>(a.p)[i]);
}
__device__ __forceinline__ void store_lse(AnyLse a, int64_t i, double v) {
  if (a.dt == DType::F32) static_cast<float*>(a.p)[i] = float(v);
  else if (a.dt == DType::F64) static_cast<double*>(a.p)[i] = v;
  else static_cast<bf16*>(a.p)[i] = __float2bfloat16_rn(float(v));
}

// Copies rows [row0, row0 + kTile) of a (T, D) matrix into smem (kTile, D + 1), zero past T.
template <class T, class A>
__device__ void load_tile(A* dst, const T* src, int64_t row0, int64_t T_, int64_t D) {
  for (int64_t e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    int64_t r = e / D, d = e % D;
    dst[r * (D + 1) + d] = row0 + r < T_ ? to_acc(src[(row0 + r) * D + d]) : A(0);
  }
}

template <class A>
__device__ __forceinline__ A dot_rows(const A* a, const A* b, int64_t D) {
  A s = 0;
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

__device__ __forceinline__ bool key_valid(const AttnDims& g, int64_t qi, int64_t kj) {
  return qi < g.Tq && kj < g.Tk && (!g.causal || kj <= qi);
}

template <class T>
__global__ void attention_forward_kernel(T* out, AnyLse lse, const T* q, const T* k, const T* v,
                                         AttnDims g) {
  using A = acc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  A* qs = reinterpret_cast<A*>(smem_raw);
  A* ks = qs + kTile * (g.D + 1);
  A* vs = ks + kTile * (g.D + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.y, q0 = int64_t(blockIdx.x) * kTile, D = g.D;
  q += bh * g.Tq * D; k += bh * g.Tk * D; v += bh * g.Tk * D; out += bh * g.Tq * D;
  load_tile(qs, q, q0, g.Tq, D);
  A m[kRows], l[kRows], o[kRows][kDPerLane];
  for (int r = 0; r < kRows; ++r) {
    m[r] = A(-INFINITY); l[r] = 0;
    for (int c = 0; c < kDPerLane; ++c) o[r][c] = 0;
  }
  const int64_t k_end = g.causal ? min(g.Tk, q0 + kTile) : g.Tk;
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    __syncthreads();
    load_tile(ks, k, k0, g.Tk, D);
    load_tile(vs, v, k0, g.Tk, D);
    __syncthreads();
    for (int r = 0; r < kRows; ++r) {
      const int qr = warp * kRows + r;
      const int64_t qi = q0 + qr, kj = k0 + lane;
      if (qi >= g.Tq) break;
      const bool ok = key_valid(g, qi, kj);
      A s = ok ? A(g.scale) * dot_rows(qs + qr * (D + 1), ks + lane * (D + 1), D) : A(-INFINITY);
      const A m_new = max(m[r], warp_max(s));
      if (m_new == A(-INFINITY)) continue;  // every key of this tile masked so far
      const A p = ok ? exp(s - m_new) : A(0), corr = exp(m[r] - m_new);
      l[r] = l[r] * corr + warp_sum(p);
      m[r] = m_new;
      for (int c = 0; c < kDPerLane; ++c) o[r][c] *= corr;
      for (int j = 0; j < 32; ++j) {
        const A pj = __shfl_sync(0xffffffffu, p, j);
        for (int c = 0; c < kDPerLane; ++c) {
          const int64_t d = lane + 32 * c;
          if (d < D) o[r][c] += pj * vs[j * (D + 1) + d];
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t qi = q0 + warp * kRows + r;
    if (qi >= g.Tq) break;
    const A inv = l[r] > A(0) ? A(1) / l[r] : A(0);
    for (int c = 0; c < kDPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < D) out[qi * D + d] = from_acc<T>(o[r][c] * inv);
    }
    if (lane == 0) store_lse(lse, bh * g.Tq + qi, double(m[r] + log(l[r])));
  }
}

// di[row] = sum_d dout[row, d] * out[row, d]; one warp per row.
template <class T>
__global__ void attention_di_kernel(acc_t<T>* di, const T* dout, const T* out, int64_t rows,
                                    int64_t D) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; row < rows;
       row += int64_t(gridDim.x) * blockDim.x / 32) {
    A s = 0;
    for (int64_t d = lane; d < D; d += 32) s += to_acc(dout[row * D + d]) * to_acc(out[row * D + d]);
    s = warp_sum(s);
    if (lane == 0) di[row] = s;
  }
}

// dK, dV for one tile of 32 keys: loops over query tiles, recomputing P = exp(s - lse).
template <class T>
__global__ void attention_dkdv_kernel(T* dk, T* dv, const T* dout, const T* q, const T* k,
                                      const T* v, AnyLse lse, const acc_t<T>* di, AttnDims g) {
  using A = acc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = g.D, P = kTile * (D + 1);
  A* ks = reinterpret_cast<A*>(smem_raw);
  A* vs = ks + P;
  A* qs = vs + P;
  A* dos = qs + P;
  A* lses = dos + P;
  A* dis = lses + kTile;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.y, k0 = int64_t(blockIdx.x) * kTile;
  q += bh * g.Tq * D; dout += bh * g.Tq * D; k += bh * g.Tk * D; v += bh * g.Tk * D;
  dk += bh * g.Tk * D; dv += bh * g.Tk * D; di += bh * g.Tq;
  load_tile(ks, k, k0, g.Tk, D);
  load_tile(vs, v, k0, g.Tk, D);
  A adk[kRows][kDPerLane], adv[kRows][kDPerLane];
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kDPerLane; ++c) adk[r][c] = adv[r][c] = 0;
  const int64_t q_start = g.causal ? k0 / kTile * kTile : 0;
  for (int64_t q0 = q_start; q0 < g.Tq; q0 += kTile) {
    __syncthreads();
    load_tile(qs, q, q0, g.Tq, D);
    load_tile(dos, dout, q0, g.Tq, D);
    if (threadIdx.x < kTile) {
      const int64_t qi = q0 + threadIdx.x;
      lses[threadIdx.x] = qi < g.Tq ? A(load_lse(lse, bh * g.Tq + qi)) : A(0);
      dis[threadIdx.x] = qi < g.Tq ? di[qi] : A(0);
    }
    __syncthreads();
    for (int r = 0; r < kRows; ++r) {
      const int kr = warp * kRows + r;
      const int64_t kj = k0 + kr, qi = q0 + lane;
      if (kj >= g.Tk) break;
      const bool ok = key_valid(g, qi, kj);
      A p = 0, ds = 0;
      if (ok) {
        const A s = A(g.scale) * dot_rows(qs + lane * (D + 1), ks + kr * (D + 1), D);
        p = exp(s - lses[lane]);
        ds = p * (dot_rows(dos + lane * (D + 1), vs + kr * (D + 1), D) - dis[lane]);
      }
      for (int i = 0; i < 32; ++i) {
        const A pi = __shfl_sync(0xffffffffu, p, i), dsi = __shfl_sync(0xffffffffu, ds, i);
        for (int c = 0; c < kDPerLane; ++c) {
          const int64_t d = lane + 32 * c;
          if (d < D) {
            adv[r][c] += pi * dos[i * (D + 1) + d];
            adk[r][c] += dsi * qs[i * (D + 1) + d];
          }
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t kj = k0 + warp * kRows + r;
    if (kj >= g.Tk) break;
    for (int c = 0; c < kDPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < D) {
        dk[kj * D + d] = from_acc<T>(adk[r][c] * A(g.scale));
        dv[kj * D + d] = from_acc<T>(adv[r][c]);
      }
    }
  }
}

// dQ for one tile of 32 queries: loops over key tiles, recomputing P and dS.
template <class T>
__global__ void attention_dq_kernel(T* dq, const T* dout, const T* q, const T* k, const T* v,
                                    AnyLse lse, const acc_t<T>* di, AttnDims g) {
  using A = acc_t<T>;
  extern __shared__ unsigned char smem_raw[];
  const int64_t D = g.D, P = kTile * (D + 1);
  A* qs = reinterpret_cast<A*>(smem_raw);
  A* dos = qs + P;
  A* ks = dos + P;
  A* vs = ks + P;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.y, q0 = int64_t(blockIdx.x) * kTile;
  q += bh * g.Tq * D; dout += bh * g.Tq * D; k += bh * g.Tk * D; v += bh * g.Tk * D;
  dq += bh * g.Tq * D; di += bh * g.Tq;
  load_tile(qs, q, q0, g.Tq, D);
  load_tile(dos, dout, q0, g.Tq, D);
  A adq[kRows][kDPerLane], lse_r[kRows], di_r[kRows];
  for (int r = 0; r < kRows; ++r) {
    const int64_t qi = q0 + warp * kRows + r;
    lse_r[r] = qi < g.Tq ? A(load_lse(lse, bh * g.Tq + qi)) : A(0);
    di_r[r] = qi < g.Tq ? di[qi] : A(0);
    for (int c = 0; c < kDPerLane; ++c) adq[r][c] = 0;
  }
  const int64_t k_end = g.causal ? min(g.Tk, q0 + kTile) : g.Tk;
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    __syncthreads();
    load_tile(ks, k, k0, g.Tk, D);
    load_tile(vs, v, k0, g.Tk, D);
    __syncthreads();
    for (int r = 0; r < kRows; ++r) {
      const int qr = warp * kRows + r;
      const int64_t qi = q0 + qr, kj = k0 + lane;
      if (qi >= g.Tq) break;
      A ds = 0;
      if (key_valid(g, qi, kj)) {
        const A s = A(g.scale) * dot_rows(qs + qr * (D + 1), ks + lane * (D + 1), D);
        const A p = exp(s - lse_r[r]);
        ds = p * (dot_rows(dos + qr * (D + 1), vs + lane * (D + 1), D) - di_r[r]);
      }
      for (int j = 0; j < 32; ++j) {
        const A dsj = __shfl_sync(0xffffffffu, ds, j);
        for (int c = 0; c < kDPerLane; ++c) {
          const int64_t d = lane + 32 * c;
          if (d < D) adq[r][c] += dsj * ks[j * (D + 1) + d];
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t qi = q0 + warp * kRows + r;
    if (qi >= g.Tq) break;
    for (int c = 0; c < kDPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < D) dq[qi * D + d] = from_acc<T>(adq[r][c] * A(g.scale));
    }
  }
}

// ---- bf16 attention on cuBLASLt --------------------------------------------------------------
constexpr int64_t kScoreBytes = int64_t(1) << 30;  // f32 scores per chunk of heads

// One warp per row of S (rows, Tk) f32, already scaled: p = softmax over the row's valid keys as
// bf16 (0 elsewhere), lse[lse0 + row] = max + log(sum).
__global__ void scores_softmax_kernel(bf16* p, AnyLse lse, const float* s, int64_t rows,
                                      int64_t Tq, int64_t Tk, bool causal, int64_t lse0) {
  const int lane = threadIdx.x & 31;
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; row < rows;
       row += int64_t(gridDim.x) * blockDim.x / 32) {
    const int64_t qi = row % Tq, n = causal ? min(Tk, qi + 1) : Tk;
    const float* sr = s + row * Tk;
    bf16* pr = p + row * Tk;
    float m = -INFINITY;
    for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, sr[j]);
    m = warp_max(m);
    float l = 0;
    for (int64_t j = lane; j < n; j += 32) l += expf(sr[j] - m);
    l = warp_sum(l);
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    for (int64_t j = lane; j < Tk; j += 32)
      pr[j] = __float2bfloat16_rn(j < n ? expf(sr[j] - m) * inv : 0.0f);
    if (lane == 0) store_lse(lse, lse0 + row, double(m) + log(double(l)));
  }
}

// One block per row of (rows, Tk): p = exp(s - lse) and ds = p (dp - di) scale on the row's valid
// keys, 0 elsewhere (masked scores and dP are never read).
__global__ void scores_grad_kernel(bf16* p, bf16* ds, const float* s, const float* dp, AnyLse lse,
                                   const float* di, int64_t rows, int64_t Tq, int64_t Tk,
                                   bool causal, int64_t lse0, float scale) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t n = causal ? min(Tk, row % Tq + 1) : Tk, base = row * Tk;
    const float l = float(load_lse(lse, lse0 + row)), d = di[lse0 + row];
    for (int64_t j = threadIdx.x; j < Tk; j += blockDim.x) {
      float pv = 0, dsv = 0;
      if (j < n) {
        pv = expf(s[base + j] - l);
        dsv = pv * (dp[base + j] - d) * scale;
      }
      p[base + j] = __float2bfloat16_rn(pv);
      ds[base + j] = __float2bfloat16_rn(dsv);
    }
  }
}

// Heads [b0, b0 + nb) of a contiguous (BH, T, D) tensor t as a raw (nb, T, D) view.
Tensor heads(const Tensor& t, int64_t b0, int64_t nb) {
  const int64_t T = t.size(2), D = t.size(3);
  return make_view(t, {nb, T, D}, {T * D, D, 1}, t.offset() + b0 * T * D);
}

int64_t heads_per_chunk(int64_t BH, int64_t Tq, int64_t Tk) {
  const int64_t per_head = Tq * Tk * int64_t(sizeof(float));
  return std::max<int64_t>(1, std::min<int64_t>(BH, kScoreBytes / std::max<int64_t>(per_head, 1)));
}

bool use_gemm_path(const Tensor& q, const Tensor& k, const Tensor& v) {
  return q.dtype() == DType::BF16 && q.is_contiguous() && k.is_contiguous() && v.is_contiguous();
}

// Raises the kernel's dynamic shared memory limit when it needs more than the 48 KiB default.
template <class K>
void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

AttnDims check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         double scale, bool causal) {
  LOOM_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention: expected (B,H,T,D) q/k/v, got ",
             q.shape(), ", ", k.shape(), ", ", v.shape());
  LOOM_CHECK(q.size(3) <= kMaxD && q.size(3) == k.size(3) && v.size(3) == q.size(3),
             "attention: expected head dim <= ", kMaxD, " (equal for q, k, v) on device cuda, got ",
             q.size(3), ", ", k.size(3), ", ", v.size(3));
  LOOM_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype() && q.dtype() == out.dtype(),
             "attention: expected one dtype for q/k/v/out, got ", dtype_name(q.dtype()));
  return AttnDims{q.size(2), k.size(2), q.size(3), scale, causal};
}

AnyLse any_lse(const Tensor& t) {
  LOOM_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::BF16,
             "attention: expected lse of dtype f32/f64/bf16, got ", dtype_name(t.dtype()));
  return {t.raw_data(), t.dtype()};
}
}  // namespace

namespace {
void gemm_attention_forward(CudaBackend& be, const Tensor& out, AnyLse lse, const Tensor& q,
                            const Tensor& k, const Tensor& v, const AttnDims& g, int64_t BH,
                            cudaStream_t st) {
  const int64_t chunk = heads_per_chunk(BH, g.Tq, g.Tk);
  const Device dev = q.device();
  for (int64_t b0 = 0; b0 < BH; b0 += chunk) {
    const int64_t nb = std::min(chunk, BH - b0), rows = nb * g.Tq;
    Tensor S = Tensor::empty({nb, g.Tq, g.Tk}, DType::F32, dev);
    Tensor P = Tensor::empty({nb, g.Tq, g.Tk}, DType::BF16, dev);
    be.gemm(S, heads(q, b0, nb), heads(k, b0, nb), false, true, g.scale, 0.0);  // (nb,Tq,Tk)
    scores_softmax_kernel<<<grid_for(rows * 32, 256), 256, 0, st>>>(
        static_cast<bf16*>(P.raw_data()), lse, static_cast<const float*>(S.raw_data()), rows,
        g.Tq, g.Tk, g.causal, b0 * g.Tq);
    CUDA_CHECK_LAUNCH();
    be.gemm(heads(out, b0, nb), P, heads(v, b0, nb), false, false, 1.0, 0.0);  // (nb,Tq,D)
  }
}

void gemm_attention_backward(CudaBackend& be, const Tensor& dq, const Tensor& dk,
                             const Tensor& dv, const Tensor& dout, const Tensor& q,
                             const Tensor& k, const Tensor& v, AnyLse lse, const float* di,
                             const AttnDims& g, int64_t BH, cudaStream_t st) {
  const int64_t chunk = heads_per_chunk(BH, g.Tq, g.Tk);
  const Device dev = q.device();
  for (int64_t b0 = 0; b0 < BH; b0 += chunk) {
    const int64_t nb = std::min(chunk, BH - b0), rows = nb * g.Tq;
    const Tensor qc = heads(q, b0, nb), kc = heads(k, b0, nb), vc = heads(v, b0, nb);
    const Tensor doc = heads(dout, b0, nb);
    Tensor S = Tensor::empty({nb, g.Tq, g.Tk}, DType::F32, dev);
    Tensor dP = Tensor::empty({nb, g.Tq, g.Tk}, DType::F32, dev);
    Tensor P = Tensor::empty({nb, g.Tq, g.Tk}, DType::BF16, dev);
    Tensor dS = Tensor::empty({nb, g.Tq, g.Tk}, DType::BF16, dev);
    be.gemm(S, qc, kc, false, true, g.scale, 0.0);  // S (nb,Tq,Tk) = scale Q K^T
    be.gemm(dP, doc, vc, false, true, 1.0, 0.0);    // dP (nb,Tq,Tk) = dO V^T
    scores_grad_kernel<<<unsigned(std::min<int64_t>(rows, 65535 * 16)), 256, 0, st>>>(
        static_cast<bf16*>(P.raw_data()), static_cast<bf16*>(dS.raw_data()),
        static_cast<const float*>(S.raw_data()), static_cast<const float*>(dP.raw_data()), lse,
        di, rows, g.Tq, g.Tk, g.causal, b0 * g.Tq, float(g.scale));
    CUDA_CHECK_LAUNCH();
    be.gemm(heads(dv, b0, nb), P, doc, true, false, 1.0, 0.0);  // dV (nb,Tk,D) = P^T dO
    be.gemm(heads(dq, b0, nb), dS, kc, false, false, 1.0, 0.0);  // dQ (nb,Tq,D) = dS K
    be.gemm(heads(dk, b0, nb), dS, qc, true, false, 1.0, 0.0);   // dK (nb,Tk,D) = dS^T Q
  }
}
}  // namespace

void CudaBackend::attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                    const Tensor& k, const Tensor& v, double scale, bool causal) {
  AttnDims g = check_attention(q, k, v, out, scale, causal);
  const int64_t BH = q.size(0) * q.size(1);
  if (BH == 0 || g.Tq == 0) return;
  cudaStream_t s = stream_for(out);
  AnyLse pl = any_lse(lse);
  if (use_gemm_path(q, k, v) && out.is_contiguous() && g.Tk > 0) {
    gemm_attention_forward(*this, out, pl, q, k, v, g, BH, s);
    return;
  }
  visit_cuda_float(q.dtype(), "attention", [&]<class T>() {
    size_t smem = size_t(3 * kTile * (g.D + 1)) * sizeof(acc_t<T>);
    set_smem(attention_forward_kernel<T>, smem);
    dim3 grid(unsigned((g.Tq + kTile - 1) / kTile), unsigned(BH));
    attention_forward_kernel<T><<<grid, kWarps * 32, smem, s>>>(
        static_cast<T*>(out.raw_data()), pl, static_cast<const T*>(q.raw_data()),
        static_cast<const T*>(k.raw_data()), static_cast<const T*>(v.raw_data()), g);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                     const Tensor& dout, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& out, const Tensor& lse,
                                     double scale, bool causal) {
  AttnDims g = check_attention(q, k, v, out, scale, causal);
  const int64_t BH = q.size(0) * q.size(1);
  if (BH == 0) return;
  cudaStream_t s = stream_for(dq);
  AnyLse pl = any_lse(lse);
  visit_cuda_float(q.dtype(), "attention_backward", [&]<class T>() {
    using A = acc_t<T>;
    Tensor di = Tensor::empty({BH * g.Tq}, std::is_same_v<A, double> ? DType::F64 : DType::F32,
                              q.device());
    A* pdi = static_cast<A*>(di.raw_data());
    const T* pq = static_cast<const T*>(q.raw_data());
    const T* pk = static_cast<const T*>(k.raw_data());
    const T* pv = static_cast<const T*>(v.raw_data());
    const T* pdo = static_cast<const T*>(dout.raw_data());
    if (BH * g.Tq > 0) {
      attention_di_kernel<T><<<grid_for(BH * g.Tq * 32, 256), 256, 0, s>>>(
          pdi, pdo, static_cast<const T*>(out.raw_data()), BH * g.Tq, g.D);
      CUDA_CHECK_LAUNCH();
    }
    if constexpr (std::is_same_v<T, bf16>) {
      if (use_gemm_path(q, k, v) && dout.is_contiguous() && dq.is_contiguous() &&
          dk.is_contiguous() && dv.is_contiguous() && g.Tk > 0 && g.Tq > 0) {
        gemm_attention_backward(*this, dq, dk, dv, dout, q, k, v, pl, pdi, g, BH, s);
        return;
      }
    }
    if (g.Tk > 0) {
      size_t smem = size_t(4 * kTile * (g.D + 1) + 2 * kTile) * sizeof(A);
      set_smem(attention_dkdv_kernel<T>, smem);
      dim3 grid(unsigned((g.Tk + kTile - 1) / kTile), unsigned(BH));
      attention_dkdv_kernel<T><<<grid, kWarps * 32, smem, s>>>(
          static_cast<T*>(dk.raw_data()), static_cast<T*>(dv.raw_data()), pdo, pq, pk, pv, pl,
          pdi, g);
      CUDA_CHECK_LAUNCH();
    }
    if (g.Tq > 0) {
      size_t smem = size_t(4 * kTile * (g.D + 1)) * sizeof(A);
      set_smem(attention_dq_kernel<T>, smem);
      dim3 grid(unsigned((g.Tq + kTile - 1) / kTile), unsigned(BH));
      attention_dq_kernel<T><<<grid, kWarps * 32, smem, s>>>(
          static_cast<T*>(dq.raw_data()), pdo, pq, pk, pv, pl, pdi, g);
      CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace loom::cuda

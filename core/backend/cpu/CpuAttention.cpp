// Fused causal / non-causal attention on the CPU, flash-attention style. Forward: per (b,h) head
// and block of Br queries, loop over blocks of Bc keys (skipping blocks above the diagonal when
// causal) with an online softmax; only a (Br,Bc) score tile exists at a time, and the row
// log-sum-exp is written for backward. Backward: per head, recompute each P tile from q, k, lse
// and accumulate dv, dk (per key block) and dq in a fixed order, so results are independent of the
// thread count. Tile GEMMs run on OpenBLAS (single-threaded inside our parallel region); exp runs
// on an AVX2 polynomial. The plain reference is cpu/ref/AttentionRef.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/backend/cpu/Blas.h"
#include "core/backend/cpu/CpuBackend.h"

namespace loom::cpu {

namespace {

constexpr int64_t kBr = 64;  // query rows per tile
constexpr int64_t kBc = 64;  // key columns per tile

// Cephes-style expf on 8 lanes (max rel. error ~2 ulp on [-87, 88]); inputs below -87 give 0.
inline __m256 exp256(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.0f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.3762626647949f));
  __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(under, y);
}

// x[i] = exp(x[i] - sub) for i < n; returns the sum (fixed order: 8 lanes, then the lanes, then
// the tail). The tail goes through the same polynomial on a padded vector.
inline float exp_sub_sum(float* x, int64_t n, float sub) {
  const __m256 vs = _mm256_set1_ps(sub);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 y = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
    _mm256_storeu_ps(x + i, y);
    acc = _mm256_add_ps(acc, y);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float sum = 0.0f;
  for (float l : lanes) sum += l;
  if (i < n) {
    alignas(32) float tail[8] = {0};
    for (int64_t t = 0; t < n - i; ++t) tail[t] = x[i + t] - sub;
    _mm256_store_ps(tail, exp256(_mm256_load_ps(tail)));
    for (int64_t t = 0; t < n - i; ++t) {
      x[i + t] = tail[t];
      sum += tail[t];
    }
  }
  return sum;
}

inline double exp_sub_sum(double* x, int64_t n, double sub) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - sub);
    sum += x[i];
  }
  return sum;
}

struct Dims {
  int64_t BH, T, D;
  bool causal;
};

// Number of valid key columns of query row r (absolute) within the key block [j0, j0+cols).
inline int64_t valid_cols(const Dims& d, int64_t r, int64_t j0, int64_t cols) {
  return d.causal ? std::clamp<int64_t>(r - j0 + 1, 0, cols) : cols;
}

// One query block [i0, i0+rows) of one head: out rows and lse.
template <class T>
void forward_block(const Dims& d, const T* q, const T* k, const T* v, T* o, T* lse, int64_t i0,
                   int64_t rows, T scale, std::vector<T>& s, std::vector<T>& acc,
                   std::vector<T>& m, std::vector<T>& l) {
  const int64_t D = d.D;
  std::fill(acc.begin(), acc.begin() + rows * D, T(0));
  std::fill(m.begin(), m.end(), -std::numeric_limits<T>::infinity());
  std::fill(l.begin(), l.end(), T(0));
  const int64_t kend = d.causal ? i0 + rows : d.T;
  for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
    const int64_t cols = std::min(kBc, kend - j0);
    blas_gemm<T>(false, true, rows, cols, D, scale, q + i0 * D, D, k + j0 * D, D, T(0), s.data(),
                 kBc);
    for (int64_t r = 0; r < rows; ++r) {
      T* sr = s.data() + r * kBc;
      const int64_t nv = valid_cols(d, i0 + r, j0, cols);
      if (nv == 0) {  // the whole tile row is masked: contributes nothing
        std::fill(sr, sr + cols, T(0));
        continue;
      }
      T mx = m[size_t(r)];
      for (int64_t c = 0; c < nv; ++c) mx = std::max(mx, sr[c]);
      const T alpha = std::exp(m[size_t(r)] - mx);  // 0 on the first block (m = -inf)
      l[size_t(r)] = l[size_t(r)] * alpha + exp_sub_sum(sr, nv, mx);
      std::fill(sr + nv, sr + cols, T(0));
      m[size_t(r)] = mx;
      if (alpha != T(1)) {
        T* ar = acc.data() + r * D;
        for (int64_t c = 0; c < D; ++c) ar[c] *= alpha;
      }
    }
    blas_gemm<T>(false, false, rows, D, cols, T(1), s.data(), kBc, v + j0 * D, D, T(1),
                 acc.data(), D);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T inv = T(1) / l[size_t(r)];
    for (int64_t c = 0; c < D; ++c) o[(i0 + r) * D + c] = acc[size_t(r * D + c)] * inv;
    lse[i0 + r] = m[size_t(r)] + std::log(l[size_t(r)]);
  }
}

template <class T>
void forward(const Dims& d, const T* q, const T* k, const T* v, T* o, T* lse, T scale) {
  const int64_t nqb = (d.T + kBr - 1) / kBr;
  const int64_t jobs = d.BH * nqb;
#pragma omp parallel if (jobs > 1)
  {
    std::vector<T> s(size_t(kBr * kBc)), acc(size_t(kBr * d.D));
    std::vector<T> m(static_cast<size_t>(kBr)), l(static_cast<size_t>(kBr));
    // Later query blocks carry more work when causal: deal jobs out dynamically (each job writes
    // its own rows, so the result does not depend on the schedule).
#pragma omp for schedule(dynamic, 1)
    for (int64_t job = jobs - 1; job >= 0; --job) {
      const int64_t h = job / nqb, i0 = (job % nqb) * kBr;
      const int64_t off = h * d.T * d.D;
      forward_block<T>(d, q + off, k + off, v + off, o + off, lse + h * d.T, i0,
                       std::min(kBr, d.T - i0), scale, s, acc, m, l);
    }
  }
}

}  // namespace

namespace {

// Scratch for one head's backward: the P / dS tile, the dP tile and Di = rowsum(dO * O).
template <class T>
struct BackwardScratch {
  std::vector<T> p, dp, di;
  BackwardScratch(int64_t T_) : p(size_t(kBr * kBc)), dp(size_t(kBr * kBc)), di(size_t(T_)) {}
};

// P tile (rows,cols) = exp(scale * q_i k_j^T - lse_i), zero where masked.
template <class T>
void recompute_p(const Dims& d, const T* q, const T* k, const T* lse, int64_t i0, int64_t rows,
                 int64_t j0, int64_t cols, T scale, T* p) {
  blas_gemm<T>(false, true, rows, cols, d.D, scale, q + i0 * d.D, d.D, k + j0 * d.D, d.D, T(0), p,
               kBc);
  for (int64_t r = 0; r < rows; ++r) {
    T* pr = p + r * kBc;
    const int64_t nv = valid_cols(d, i0 + r, j0, cols);
    exp_sub_sum(pr, nv, lse[i0 + r]);
    std::fill(pr + nv, pr + cols, T(0));
  }
}

// One head: dq, dk, dv (T,D) from dout, q, k, v, out (T,D) and lse (T).
template <class T>
void backward_head(const Dims& d, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k,
                   const T* v, const T* o, const T* lse, T scale, BackwardScratch<T>& s) {
  const int64_t D = d.D;
  for (int64_t r = 0; r < d.T; ++r) {
    T acc = 0;
    for (int64_t c = 0; c < D; ++c) acc += dout[r * D + c] * o[r * D + c];
    s.di[size_t(r)] = acc;
  }
  std::fill(dq, dq + d.T * D, T(0));
  for (int64_t j0 = 0; j0 < d.T; j0 += kBc) {
    const int64_t cols = std::min(kBc, d.T - j0);
    const int64_t first_i = d.causal ? j0 / kBr * kBr : 0;
    std::fill(dk + j0 * D, dk + (j0 + cols) * D, T(0));
    std::fill(dv + j0 * D, dv + (j0 + cols) * D, T(0));
    for (int64_t i0 = first_i; i0 < d.T; i0 += kBr) {
      const int64_t rows = std::min(kBr, d.T - i0);
      T* p = s.p.data();
      T* dp = s.dp.data();
      recompute_p<T>(d, q, k, lse, i0, rows, j0, cols, scale, p);
      // dv_j (cols,D) += P^T (cols,rows) @ dout_i (rows,D)
      blas_gemm<T>(true, false, cols, D, rows, T(1), p, kBc, dout + i0 * D, D, T(1), dv + j0 * D,
                   D);
      // dP (rows,cols) = dout_i (rows,D) @ v_j^T (D,cols)
      blas_gemm<T>(false, true, rows, cols, D, T(1), dout + i0 * D, D, v + j0 * D, D, T(0), dp,
                   kBc);
      for (int64_t r = 0; r < rows; ++r) {  // dS = P * (dP - Di), written over P
        const T di = s.di[size_t(i0 + r)];
        T* pr = p + r * kBc;
        const T* dpr = dp + r * kBc;
        for (int64_t c = 0; c < cols; ++c) pr[c] = pr[c] * (dpr[c] - di);
      }
      // dq_i (rows,D) += scale * dS (rows,cols) @ k_j (cols,D)
      blas_gemm<T>(false, false, rows, D, cols, scale, p, kBc, k + j0 * D, D, T(1), dq + i0 * D,
                   D);
      // dk_j (cols,D) += scale * dS^T (cols,rows) @ q_i (rows,D)
      blas_gemm<T>(true, false, cols, D, rows, scale, p, kBc, q + i0 * D, D, T(1), dk + j0 * D,
                   D);
    }
  }
}

template <class T>
void backward(const Dims& d, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k,
              const T* v, const T* o, const T* lse, T scale) {
  // One head per job: dq accumulates over key blocks inside the head in a fixed order.
#pragma omp parallel if (d.BH > 1)
  {
    BackwardScratch<T> s(d.T);
#pragma omp for schedule(dynamic, 1)
    for (int64_t h = 0; h < d.BH; ++h) {
      const int64_t off = h * d.T * d.D;
      backward_head<T>(d, dq + off, dk + off, dv + off, dout + off, q + off, k + off, v + off,
                       o + off, lse + h * d.T, scale, s);
    }
  }
}

Dims check_dims(const Tensor& q, const Tensor& k, const Tensor& v, const char* op,
                bool causal) {
  LOOM_CHECK(q.dim() == 4 && q.shape() == k.shape() && q.shape() == v.shape(), op,
             ": expected q, k, v of one shape (B,H,T,D), got ", q.shape(), ", ", k.shape(), ", ",
             v.shape());
  LOOM_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, ": expected one dtype, got ",
             dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), ", ", dtype_name(v.dtype()));
  LOOM_INTERNAL_ASSERT(q.is_contiguous() && k.is_contiguous() && v.is_contiguous(), op,
                       ": inputs must be contiguous");
  return Dims{q.size(0) * q.size(1), q.size(2), q.size(3), causal};
}

}  // namespace

void CpuBackend::attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                   const Tensor& k, const Tensor& v, double scale, bool causal) {
  const Dims d = check_dims(q, k, v, "attention_forward", causal);
  LOOM_INTERNAL_ASSERT(out.shape() == q.shape() && out.is_contiguous() && lse.is_contiguous() &&
                           lse.numel() == d.BH * d.T,
                       "attention_forward: bad out/lse");
  if (d.BH * d.T == 0) return;
  visit_float(q.dtype(), "attention_forward", [&]<class T>() {
    forward<T>(d, q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), lse.data<T>(), T(scale));
  });
}

void CpuBackend::attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                    const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    double scale, bool causal) {
  const Dims d = check_dims(q, k, v, "attention_backward", causal);
  for (const Tensor* t : {&dq, &dk, &dv, &dout, &out}) {
    LOOM_INTERNAL_ASSERT(t->shape() == q.shape() && t->is_contiguous() && t->dtype() == q.dtype(),
                         "attention_backward: bad tensor ", t->shape());
  }
  LOOM_INTERNAL_ASSERT(lse.is_contiguous() && lse.numel() == d.BH * d.T,
                       "attention_backward: bad lse");
  if (d.BH * d.T == 0) return;
  visit_float(q.dtype(), "attention_backward", [&]<class T>() {
    backward<T>(d, dq.data<T>(), dk.data<T>(), dv.data<T>(), dout.data<T>(), q.data<T>(),
                k.data<T>(), v.data<T>(), out.data<T>(), lse.data<T>(), T(scale));
  });
}

}  // namespace loom::cpu

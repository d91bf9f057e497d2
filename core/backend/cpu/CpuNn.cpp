// Fast CPU kernels for softmax / log_softmax, layer norm and cross entropy (Backend.h contracts;
// spec in ref/NnRef.cpp). Rows are independent: OpenMP splits rows statically and each row is
// computed by one thread in a fixed order, so results never depend on the thread count. f32 inner
// loops use AVX2 + FMA with the vectorised exp below; f64 (gradcheck, tests) uses scalar loops.
// Every reduction (row sums, dot products, layer-norm dweight/dbias partials) accumulates in double,
// also for f32, so results stay within a few f32 ulps of the double reference even for 50257-wide
// rows. Layer-norm dweight/dbias are summed per fixed block of rows, then the block partials in
// block order (RowBlocks.h; again independent of the thread count).
#include <immintrin.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/RowBlocks.h"

namespace loom::cpu {

namespace {

// exp(x) for 8 floats: x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), exp(r) by a
// degree-7 Taylor polynomial (truncation < 6e-9 relative, so ~1-2 ulp after rounding), times 2^n
// built in the exponent bits. Inputs below -87.3 give exactly 0 (exp(-inf) = 0 for masked
// scores); inputs are clamped at 88 above (callers pass x - max <= ~0); NaN propagates.
inline __m256 exp256(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.0f);
  const __m256 xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));  // NB: operand order keeps NaN
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
}

inline double hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// Double accumulator for 8 float lanes (two 4-wide halves).
struct AccPd {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  void add(__m256 v) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  void fma(__m256 a, __m256 b) {  // += a*b with the product exact in double
    lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                         _mm256_cvtps_pd(_mm256_castps256_ps128(b)), lo);
    hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)), hi);
  }
  double sum() const { return hsum_pd(_mm256_add_pd(lo, hi)); }
};

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  if constexpr (kVec<T>) {
    __m256 a = _mm256_set1_ps(m), b = a;
    for (; i + 16 <= n; i += 16) {
      a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
      b = _mm256_max_ps(b, _mm256_loadu_ps(x + i + 8));
    }
    m = hmax(_mm256_max_ps(a, b));
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum_i exp(x[i] - shift) in double; also stores the terms into out when out != nullptr.
template <class T>
double row_exp_sum(T* out, const T* x, T shift, int64_t n) {
  int64_t i = 0;
  double s = 0;
  if constexpr (kVec<T>) {
    const __m256 sh = _mm256_set1_ps(shift);
    AccPd a0, a1;  // two chains for ILP
    for (; i + 32 <= n; i += 32) {
      __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
      __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), sh));
      __m256 e2 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 16), sh));
      __m256 e3 = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i + 24), sh));
      if (out) {
        _mm256_storeu_ps(out + i, e0);
        _mm256_storeu_ps(out + i + 8, e1);
        _mm256_storeu_ps(out + i + 16, e2);
        _mm256_storeu_ps(out + i + 24, e3);
      }
      a0.add(_mm256_add_ps(e0, e1));  // NB: pairing two positive terms in f32 costs 1/2 ulp
      a1.add(_mm256_add_ps(e2, e3));
    }
    for (; i + 8 <= n; i += 8) {
      __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
      if (out) _mm256_storeu_ps(out + i, e);
      a0.add(e);
    }
    s = a0.sum() + a1.sum();
  }
  for (; i < n; ++i) {
    T e = std::exp(x[i] - shift);
    if (out) out[i] = e;
    s += e;
  }
  return s;
}

// y[i] = a * x[i] + b
template <class T>
void row_affine(T* y, const T* x, T a, T b, int64_t n) {
  int64_t i = 0;
  if constexpr (kVec<T>) {
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), vb));
  }
  for (; i < n; ++i) y[i] = a * x[i] + b;
}

template <class T>
void softmax_row(T* y, const T* x, int64_t n, bool log) {
  const T m = row_max(x, n);
  if (log) {
    const T lse = T(double(m) + std::log(row_exp_sum<T>(nullptr, x, m, n)));
    row_affine<T>(y, x, T(1), -lse, n);
  } else {
    const double s = row_exp_sum<T>(y, x, m, n);
    row_affine<T>(y, y, T(1.0 / s), T(0), n);
  }
}

// sum_i a[i] * b[i] in double (b == nullptr: sum_i a[i])
template <class T>
double row_dot(const T* a, const T* b, int64_t n) {
  int64_t i = 0;
  double s = 0;
  if constexpr (kVec<T>) {
    AccPd s0, s1;
    for (; i + 16 <= n; i += 16) {
      if (b) {
        s0.fma(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s1.fma(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
      } else {
        s0.add(_mm256_loadu_ps(a + i));
        s1.add(_mm256_loadu_ps(a + i + 8));
      }
    }
    s = s0.sum() + s1.sum();
  }
  for (; i < n; ++i) s += double(a[i]) * (b ? double(b[i]) : 1.0);
  return s;
}

template <class T>
void softmax_backward_row(T* dx, const T* dy, const T* y, int64_t n, bool log) {
  int64_t i = 0;
  if (log) {  // dx = dy - exp(y) * sum(dy)
    const T s = T(row_dot<T>(dy, nullptr, n));
    if constexpr (kVec<T>) {
      const __m256 vs = _mm256_set1_ps(s);
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, _mm256_fnmadd_ps(exp256(_mm256_loadu_ps(y + i)), vs,
                                                  _mm256_loadu_ps(dy + i)));
    }
    for (; i < n; ++i) dx[i] = dy[i] - std::exp(y[i]) * s;
  } else {  // dx = y * (dy - sum(dy * y))
    const T s = T(row_dot<T>(dy, y, n));
    if constexpr (kVec<T>) {
      const __m256 vs = _mm256_set1_ps(s);
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(y + i),
                                               _mm256_sub_ps(_mm256_loadu_ps(dy + i), vs)));
    }
    for (; i < n; ++i) dx[i] = y[i] * (dy[i] - s);
  }
}

int64_t rows_of(const Tensor& x, int64_t cols) { return cols == 0 ? 0 : x.numel() / cols; }

void check_same_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    LOOM_INTERNAL_ASSERT(t->is_contiguous(), op, ": expected contiguous tensors");
  }
}

}  // namespace

void CpuBackend::softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  check_same_contiguous("softmax_forward", {&y, &x});
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1), rows = rows_of(x, cols);
  visit_float(x.dtype(), "softmax_forward", [&]<class T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElems && rows > 1)
    for (int64_t r = 0; r < rows; ++r) softmax_row<T>(out + r * cols, in + r * cols, cols, log);
  });
}

void CpuBackend::softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  check_same_contiguous("softmax_backward", {&dx, &dy, &y});
  const int64_t cols = y.dim() == 0 ? 1 : y.size(-1), rows = rows_of(y, cols);
  visit_float(y.dtype(), "softmax_backward", [&]<class T>() {
    const T* g = dy.data<T>();
    const T* p = y.data<T>();
    T* o = dx.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMinElems && rows > 1)
    for (int64_t r = 0; r < rows; ++r)
      softmax_backward_row<T>(o + r * cols, g + r * cols, p + r * cols, cols, log);
  });
}

namespace {

// Mean and rstd of one row: two passes (sum, then squared deviations), the row sits in cache.
template <class T>
void ln_stats(const T* x, int64_t C, double eps, T& mean, T& rstd) {
  const T m = T(row_dot<T>(x, nullptr, C) / double(C));
  int64_t i = 0;
  double v = 0;
  if constexpr (kVec<T>) {
    const __m256 vm = _mm256_set1_ps(m);
    AccPd a0, a1;
    for (; i + 16 <= C; i += 16) {
      __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
      __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);
      a0.fma(d0, d0);
      a1.fma(d1, d1);
    }
    v = a0.sum() + a1.sum();
  }
  for (; i < C; ++i) v += double(x[i] - m) * double(x[i] - m);
  mean = m;
  rstd = T(1.0 / std::sqrt(v / double(C) + eps));
}

// y = (x - mean) * rstd * w + b   (w, b may be null)
template <class T>
void ln_apply(T* y, const T* x, const T* w, const T* b, T mean, T rstd, int64_t C) {
  int64_t i = 0;
  if constexpr (kVec<T>) {
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= C; i += 8) {
      __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
      __m256 vw = w ? _mm256_loadu_ps(w + i) : one, vb = b ? _mm256_loadu_ps(b + i) : zero;
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(xh, vw, vb));
    }
  }
  for (; i < C; ++i) y[i] = (x[i] - mean) * rstd * (w ? w[i] : T(1)) + (b ? b[i] : T(0));
}

}  // namespace

void CpuBackend::layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd,
                                   const Tensor& x, const Tensor& weight, const Tensor& bias,
                                   double eps) {
  check_same_contiguous("layernorm_forward", {&y, &mean, &rstd, &x, &weight, &bias});
  const int64_t C = x.size(-1), N = rows_of(x, C);
  visit_float(x.dtype(), "layernorm_forward", [&]<class T>() {
    const T* in = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* b = bias.defined() ? bias.data<T>() : nullptr;
    T* out = y.data<T>();
    T* mo = mean.defined() ? mean.data<T>() : nullptr;
    T* ro = rstd.defined() ? rstd.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElems && N > 1)
    for (int64_t i = 0; i < N; ++i) {
      T m, r;
      ln_stats<T>(in + i * C, C, eps, m, r);
      ln_apply<T>(out + i * C, in + i * C, w, b, m, r, C);
      if (mo) mo[i] = m;
      if (ro) ro[i] = r;
    }
  });
}

namespace {

// One row of layer-norm backward. Accumulates dy*xhat into pw and dy into pb (double block
// partials, may be null) and writes dx (may be null). tmp holds C scratch values (dy * w).
template <class T>
void ln_backward_row(T* dx, double* pw, double* pb, T* tmp, const T* dy, const T* x, const T* w,
                     T mean, T rstd, int64_t C) {
  double sum_dn = 0, sum_dn_xhat = 0;  // sums of dnorm = dy*w and of dnorm * xhat
  int64_t i = 0;
  if constexpr (kVec<T>) {
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    AccPd s0, s1;
    for (; i + 8 <= C; i += 8) {
      __m256 g = _mm256_loadu_ps(dy + i);
      __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
      __m256 dn = w ? _mm256_mul_ps(g, _mm256_loadu_ps(w + i)) : g;
      _mm256_storeu_ps(tmp + i, dn);
      s0.add(dn);
      s1.fma(dn, xh);
      if (pw) {
        AccPd a{_mm256_loadu_pd(pw + i), _mm256_loadu_pd(pw + i + 4)};
        a.fma(g, xh);
        _mm256_storeu_pd(pw + i, a.lo);
        _mm256_storeu_pd(pw + i + 4, a.hi);
      }
      if (pb) {
        AccPd a{_mm256_loadu_pd(pb + i), _mm256_loadu_pd(pb + i + 4)};
        a.add(g);
        _mm256_storeu_pd(pb + i, a.lo);
        _mm256_storeu_pd(pb + i + 4, a.hi);
      }
    }
    sum_dn = s0.sum();
    sum_dn_xhat = s1.sum();
  }
  for (; i < C; ++i) {
    T xh = (x[i] - mean) * rstd, dn = dy[i] * (w ? w[i] : T(1));
    tmp[i] = dn;
    sum_dn += dn;
    sum_dn_xhat += double(dn) * double(xh);
    if (pw) pw[i] += double(dy[i]) * double(xh);
    if (pb) pb[i] += dy[i];
  }
  if (!dx) return;
  const T a = T(sum_dn / double(C)), b = T(sum_dn_xhat / double(C));
  i = 0;
  if constexpr (kVec<T>) {
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    for (; i + 8 <= C; i += 8) {
      __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
      __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(tmp + i), va), _mm256_mul_ps(xh, vb));
      _mm256_storeu_ps(dx + i, _mm256_mul_ps(d, vr));
    }
  }
  for (; i < C; ++i) dx[i] = (tmp[i] - a - (x[i] - mean) * rstd * b) * rstd;
}

}  // namespace

void CpuBackend::layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                    const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    const Tensor& mean, const Tensor& rstd) {
  check_same_contiguous("layernorm_backward", {&dx, &dweight, &dbias, &dy, &x, &weight});
  const int64_t C = x.size(-1), N = rows_of(x, C);
  const int64_t blocks = norm_row_blocks(N);
  visit_float(x.dtype(), "layernorm_backward", [&]<class T>() {
    const bool want_w = dweight.defined(), want_b = dbias.defined();
    std::vector<double> pw(want_w ? size_t(blocks * C) : 0, 0.0);
    std::vector<double> pb(want_b ? size_t(blocks * C) : 0, 0.0);
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    T* d = dx.defined() ? dx.data<T>() : nullptr;
    for_each_norm_row<T>(N, C, N * C >= kParallelMinElems, [&](int64_t i, int64_t blk, T* tmp) {
      ln_backward_row<T>(d ? d + i * C : nullptr, want_w ? pw.data() + blk * C : nullptr,
                         want_b ? pb.data() + blk * C : nullptr, tmp, dy.data<T>() + i * C,
                         x.data<T>() + i * C, w, mean.data<T>()[i], rstd.data<T>()[i], C);
    });
    const bool parallel_columns = blocks * C >= kParallelMinElems;
    if (want_w) sum_block_partials(pw, blocks, C, dweight.data<T>(), parallel_columns);
    if (want_b) sum_block_partials(pb, blocks, C, dbias.data<T>(), parallel_columns);
  });
}

namespace {

void check_targets(const int64_t* t, int64_t N, int64_t V, int64_t ignore_index) {
  for (int64_t i = 0; i < N; ++i) {
    LOOM_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < V), "cross_entropy: expected target ",
               "in [0, ", V, ") or ignore_index ", ignore_index, ", got ", t[i], " at row ", i);
  }
}

// out[i] = scale * exp(x[i] - shift)
template <class T>
void row_exp_scaled(T* out, const T* x, T shift, T scale, int64_t n) {
  int64_t i = 0;
  if constexpr (kVec<T>) {
    const __m256 sh = _mm256_set1_ps(shift), sc = _mm256_set1_ps(scale);
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(out + i, _mm256_mul_ps(sc, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh))));
  }
  for (; i < n; ++i) out[i] = scale * std::exp(x[i] - shift);
}

}  // namespace

void CpuBackend::cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                                       const Tensor& targets, int64_t ignore_index) {
  check_same_contiguous("cross_entropy_forward", {&loss, &lse, &logits, &targets});
  const int64_t N = logits.size(0), V = logits.size(1);
  const int64_t* t = targets.data<int64_t>();
  check_targets(t, N, V, ignore_index);
  visit_float(logits.dtype(), "cross_entropy_forward", [&]<class T>() {
    const T* x = logits.data<T>();
    T* lo = loss.data<T>();
    T* ls = lse.data<T>();
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElems && N > 1)
    for (int64_t i = 0; i < N; ++i) {
      const T* xr = x + i * V;
      const T m = row_max(xr, V);
      const T l = T(double(m) + std::log(row_exp_sum<T>(nullptr, xr, m, V)));
      ls[i] = l;
      lo[i] = t[i] == ignore_index ? T(0) : l - xr[t[i]];
    }
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss,
                                        const Tensor& logits, const Tensor& targets,
                                        const Tensor& lse, int64_t ignore_index) {
  check_same_contiguous("cross_entropy_backward", {&dlogits, &dloss, &logits, &targets, &lse});
  const int64_t N = logits.size(0), V = logits.size(1);
  const int64_t* t = targets.data<int64_t>();
  check_targets(t, N, V, ignore_index);
  visit_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    const T* x = logits.data<T>();
    const T* g = dloss.data<T>();
    const T* ls = lse.data<T>();
    T* d = dlogits.data<T>();
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElems && N > 1)
    for (int64_t i = 0; i < N; ++i) {
      T* dr = d + i * V;
      if (t[i] == ignore_index) {
        std::fill(dr, dr + V, T(0));
        continue;
      }
      row_exp_scaled<T>(dr, x + i * V, ls[i], g[i], V);
      dr[t[i]] -= g[i];
    }
  });
}

}  // namespace loom::cpu

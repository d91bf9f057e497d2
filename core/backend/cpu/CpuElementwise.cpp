// CPU unary, binary and where kernels over any strided layout (StridedLoop.h splits the work into
// fixed chunks across OpenMP threads, so results do not depend on the thread count). f32 runs whose
// operands are contiguous (or a stride-0 scalar operand) take AVX2 paths from VecMath.h; every other
// case uses the scalar formulas of ref/ElementwiseRef.h, the spec. `out` may alias an input exactly.
#include <cstring>

#include "core/backend/cpu/CpuBackend.h"
#include "core/backend/cpu/StridedLoop.h"
#include "core/backend/cpu/VecMath.h"
#include "core/backend/cpu/ref/ElementwiseRef.h"

namespace loom::cpu {

namespace {

using P2 = std::array<char*, 2>;
using S2 = std::array<int64_t, 2>;
using P3 = std::array<char*, 3>;
using S3 = std::array<int64_t, 3>;

// Vector body of a unary f32 op; returns false when the op has no vector form.
template <class F>
bool vec_unary_run(float* o, const float* x, int64_t n, float alpha, float beta, F&& f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {  // tail through a padded buffer so it gets the same rounding as the body
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(buf, x + i, size_t(n - i) * sizeof(float));
    _mm256_store_ps(buf, f(_mm256_load_ps(buf)));
    std::memcpy(o + i, buf, size_t(n - i) * sizeof(float));
  }
  return true;
}

bool unary_f32_contig(UnaryOp op, float* o, const float* x, int64_t n, float a, float b) {
  const __m256 va = _mm256_set1_ps(a), zero = _mm256_setzero_ps();
  switch (op) {
    case UnaryOp::Exp: return vec_unary_run(o, x, n, a, b, [](__m256 v) { return vec::exp(v); });
    case UnaryOp::Tanh: return vec_unary_run(o, x, n, a, b, [](__m256 v) { return vec::tanh(v); });
    case UnaryOp::Gelu: return vec_unary_run(o, x, n, a, b, [](__m256 v) { return vec::gelu(v); });
    case UnaryOp::Sigmoid:
      return vec_unary_run(o, x, n, a, b, [](__m256 v) { return vec::sigmoid(v); });
    case UnaryOp::AddScalar:
      return vec_unary_run(o, x, n, a, b, [&](__m256 v) { return _mm256_add_ps(v, va); });
    case UnaryOp::MulScalar:
      return vec_unary_run(o, x, n, a, b, [&](__m256 v) { return _mm256_mul_ps(v, va); });
    case UnaryOp::Square:
      return vec_unary_run(o, x, n, a, b, [](__m256 v) { return _mm256_mul_ps(v, v); });
    case UnaryOp::Neg:
      return vec_unary_run(o, x, n, a, b, [&](__m256 v) { return _mm256_sub_ps(zero, v); });
    case UnaryOp::Sqrt:
      return vec_unary_run(o, x, n, a, b, [](__m256 v) { return _mm256_sqrt_ps(v); });
    case UnaryOp::Relu:  // max(v, 0) returns 0 for NaN; keep NaN like the reference
      return vec_unary_run(o, x, n, a, b, [&](__m256 v) {
        __m256 r = _mm256_max_ps(v, zero);
        return _mm256_blendv_ps(r, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      });
    default: return false;
  }
}

// Contiguous f64 forms of the cheap ops (the same IEEE operations as ref::unary_scalar, so the
// same bits) as plain loops the compiler vectorises; clip_grad_norm squares every f64 gradient.
bool unary_f64_contig(UnaryOp op, double* o, const double* x, int64_t n, double a) {
  switch (op) {
    case UnaryOp::Square:
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] * x[i];
      return true;
    case UnaryOp::MulScalar:
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] * a;
      return true;
    case UnaryOp::AddScalar:
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] + a;
      return true;
    case UnaryOp::Neg:
      for (int64_t i = 0; i < n; ++i) o[i] = -x[i];
      return true;
    default: return false;
  }
}

template <class T>
void unary_strided(UnaryOp op, char* o, int64_t so, const char* x, int64_t sx, int64_t n,
                   double a, double b) {
  if (so == int64_t(sizeof(T)) && sx == int64_t(sizeof(T))) {
    T* po = reinterpret_cast<T*>(o);
    const T* px = reinterpret_cast<const T*>(x);
    for (int64_t i = 0; i < n; ++i) po[i] = ref::unary_scalar<T>(op, px[i], a, b);
    return;
  }
  for (int64_t i = 0; i < n; ++i)
    *reinterpret_cast<T*>(o + i * so) =
        ref::unary_scalar<T>(op, *reinterpret_cast<const T*>(x + i * sx), a, b);
}

// Binary f32 with a contiguous `a` and `b` either contiguous (bstep 1) or one scalar (bstep 0).
template <class F>
void vec_binary_run(float* o, const float* a, const float* b, int64_t bstep, int64_t n, F&& f) {
  int64_t i = 0;
  const __m256 bs = _mm256_set1_ps(b[0]);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(o + i, f(_mm256_loadu_ps(a + i), bstep ? _mm256_loadu_ps(b + i) : bs));
  if (i < n) {
    alignas(32) float ba[8] = {0, 0, 0, 0, 0, 0, 0, 0}, bb[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(ba, a + i, size_t(n - i) * sizeof(float));
    for (int64_t k = 0; k < n - i; ++k) bb[k] = b[(i + k) * bstep];
    _mm256_store_ps(ba, f(_mm256_load_ps(ba), _mm256_load_ps(bb)));
    std::memcpy(o + i, ba, size_t(n - i) * sizeof(float));
  }
}

bool binary_f32_contig(BinaryOp op, float* o, const float* a, const float* b, int64_t bstep,
                       int64_t n) {
  switch (op) {
    case BinaryOp::Add:
      vec_binary_run(o, a, b, bstep, n, [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); });
      return true;
    case BinaryOp::Sub:
      vec_binary_run(o, a, b, bstep, n, [](__m256 x, __m256 y) { return _mm256_sub_ps(x, y); });
      return true;
    case BinaryOp::Mul:
      vec_binary_run(o, a, b, bstep, n, [](__m256 x, __m256 y) { return _mm256_mul_ps(x, y); });
      return true;
    case BinaryOp::Div:
      vec_binary_run(o, a, b, bstep, n, [](__m256 x, __m256 y) { return _mm256_div_ps(x, y); });
      return true;
    case BinaryOp::GeluBackward:
      vec_binary_run(o, a, b, bstep, n,
                     [](__m256 dy, __m256 x) { return vec::gelu_backward(dy, x); });
      return true;
    case BinaryOp::TanhBackward:
      vec_binary_run(o, a, b, bstep, n, [](__m256 dy, __m256 y) {
        return _mm256_mul_ps(dy, _mm256_fnmadd_ps(y, y, _mm256_set1_ps(1.0f)));
      });
      return true;
    case BinaryOp::ReluBackward:
      vec_binary_run(o, a, b, bstep, n, [](__m256 dy, __m256 x) {
        return _mm256_and_ps(dy, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
      });
      return true;
    default: return false;
  }
}

template <class T>
void binary_strided(BinaryOp op, P3 p, S3 s, int64_t n) {
  if (ref::is_comparison(op)) {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<bool*>(p[0] + i * s[0]) = ref::compare_scalar<T>(
          op, *reinterpret_cast<const T*>(p[1] + i * s[1]),
          *reinterpret_cast<const T*>(p[2] + i * s[2]));
    return;
  }
  if constexpr (!std::is_same_v<T, bool>) {
    const int64_t e = sizeof(T);
    if (s[0] == e && s[1] == e && s[2] == e) {
      T* o = reinterpret_cast<T*>(p[0]);
      const T* a = reinterpret_cast<const T*>(p[1]);
      const T* b = reinterpret_cast<const T*>(p[2]);
      for (int64_t i = 0; i < n; ++i) o[i] = ref::binary_scalar<T>(op, a[i], b[i]);
      return;
    }
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<T*>(p[0] + i * s[0]) =
          ref::binary_scalar<T>(op, *reinterpret_cast<const T*>(p[1] + i * s[1]),
                                *reinterpret_cast<const T*>(p[2] + i * s[2]));
  }
}

void check_same_shape(const char* op, const Tensor& out, const Tensor& in) {
  LOOM_INTERNAL_ASSERT(out.shape() == in.shape(), op, ": out ", out.shape(), " vs input ",
                       in.shape());
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha,
                       double beta) {
  ref::check_unary(op, x.dtype());
  check_same_shape(unary_op_name(op), out, x);
  LOOM_INTERNAL_ASSERT(out.dtype() == x.dtype(), "unary out dtype");
  if (out.numel() == 0) return;
  visit_dtype(x.dtype(), [&]<class T>() {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      strided_loop<2>({&out, &x}, [&](P2 p, S2 s, int64_t n) {
        if constexpr (std::is_same_v<T, float>) {
          if (s[0] == 4 && s[1] == 4 &&
              unary_f32_contig(op, reinterpret_cast<float*>(p[0]),
                               reinterpret_cast<const float*>(p[1]), n, float(alpha),
                               float(beta)))
            return;
        }
        if constexpr (std::is_same_v<T, double>) {
          if (s[0] == 8 && s[1] == 8 &&
              unary_f64_contig(op, reinterpret_cast<double*>(p[0]),
                               reinterpret_cast<const double*>(p[1]), n, alpha))
            return;
        }
        unary_strided<T>(op, p[0], s[0], p[1], s[1], n, alpha, beta);
      });
    }
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  ref::check_binary(op, a.dtype());
  LOOM_CHECK(a.dtype() == b.dtype(), "binary: ", binary_op_name(op),
             " expected equal dtypes, got ", dtype_name(a.dtype()), " and ",
             dtype_name(b.dtype()));
  check_same_shape(binary_op_name(op), out, a);
  check_same_shape(binary_op_name(op), out, b);
  LOOM_INTERNAL_ASSERT(out.dtype() == (ref::is_comparison(op) ? DType::Bool : a.dtype()),
                       "binary out dtype");
  if (out.numel() == 0) return;
  visit_dtype(a.dtype(), [&]<class T>() {
    if constexpr (std::is_arithmetic_v<T>) {
      strided_loop<3>({&out, &a, &b}, [&](P3 p, S3 s, int64_t n) {
        if constexpr (std::is_same_v<T, float>) {
          if (s[0] == 4 && s[1] == 4 && (s[2] == 4 || s[2] == 0) &&
              binary_f32_contig(op, reinterpret_cast<float*>(p[0]),
                                reinterpret_cast<const float*>(p[1]),
                                reinterpret_cast<const float*>(p[2]), s[2] / 4, n))
            return;
        }
        binary_strided<T>(op, p, s, n);
      });
    }
  });
}

void CpuBackend::where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  ref::check_where(cond.dtype(), a.dtype());
  LOOM_CHECK(a.dtype() == b.dtype(), "where: expected equal dtypes, got ", dtype_name(a.dtype()),
             " and ", dtype_name(b.dtype()));
  check_same_shape("where", out, cond);
  check_same_shape("where", out, a);
  check_same_shape("where", out, b);
  if (out.numel() == 0) return;
  visit_dtype(a.dtype(), [&]<class T>() {
    strided_loop<4>({&out, &cond, &a, &b},
                    [&](std::array<char*, 4> p, std::array<int64_t, 4> s, int64_t n) {
                      for (int64_t i = 0; i < n; ++i) {
                        const bool c = *reinterpret_cast<const bool*>(p[1] + i * s[1]);
                        *reinterpret_cast<T*>(p[0] + i * s[0]) =
                            *reinterpret_cast<const T*>(p[c ? 2 : 3] + i * s[c ? 2 : 3]);
                      }
                    });
  });
}

}  // namespace loom::cpu

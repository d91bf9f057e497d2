// Reference elementwise and reduction kernels (see ElementwiseRef.h): one thread, one element at
// a time, strided addressing by explicit index arithmetic.
#include "core/backend/cpu/ref/ElementwiseRef.h"

#include <limits>

namespace loom::cpu::ref {

namespace {

bool is_int(DType dt) { return dt == DType::I32 || dt == DType::I64; }
bool is_float(DType dt) { return dt == DType::F32 || dt == DType::F64; }

// Element offset (in elements) of linear index i of t in row-major order.
int64_t offset_of(const Tensor& t, int64_t i) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    int64_t size = t.shape()[size_t(d)];
    off += (i % size) * t.strides()[size_t(d)];
    i /= size;
  }
  return off;
}

template <class T>
T& at(const Tensor& t, int64_t i) {
  return static_cast<T*>(t.raw_data())[offset_of(t, i)];
}

}  // namespace

bool is_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::Eq: case BinaryOp::Ne: case BinaryOp::Lt: case BinaryOp::Le:
    case BinaryOp::Gt: case BinaryOp::Ge: return true;
    default: return false;
  }
}

bool unary_supports(UnaryOp op, DType dt) {
  if (is_float(dt)) return true;
  if (!is_int(dt)) return false;
  return op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::AddScalar ||
         op == UnaryOp::MulScalar;
}

bool binary_supports(BinaryOp op, DType dt) {
  if (is_float(dt)) return true;
  if (dt == DType::Bool) return op == BinaryOp::Eq || op == BinaryOp::Ne;
  if (!is_int(dt)) return false;
  return is_comparison(op) || op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul ||
         op == BinaryOp::Maximum || op == BinaryOp::Minimum;
}

void check_unary(UnaryOp op, DType dt) {
  LOOM_CHECK(unary_supports(op, dt), "unary: ", unary_op_name(op), " does not support dtype ",
             dtype_name(dt), " on cpu; hint: supported are f32/f64",
             " (i32/i64 for neg, abs, add_scalar, mul_scalar)");
}

void check_binary(BinaryOp op, DType dt) {
  LOOM_CHECK(binary_supports(op, dt), "binary: ", binary_op_name(op), " does not support dtype ",
             dtype_name(dt), " on cpu; hint: supported are f32/f64 (i32/i64 for add, sub, mul, ",
             "maximum, minimum and comparisons; bool for eq/ne)");
}

void check_where(DType cond, DType dt) {
  LOOM_CHECK(cond == DType::Bool, "where: expected a bool condition, got ", dtype_name(cond));
  LOOM_CHECK(is_float(dt) || is_int(dt) || dt == DType::Bool, "where: does not support dtype ",
             dtype_name(dt), " on cpu; hint: supported are f32, f64, i32, i64, bool");
}

void check_reduce(ReduceOp op, DType dt) {
  static const char* names[] = {"sum", "max", "min"};
  LOOM_CHECK(is_float(dt) || is_int(dt), "reduce: ", names[int(op)], " does not support dtype ",
             dtype_name(dt), " on cpu; hint: supported are f32, f64, i32, i64");
}

void unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha, double beta) {
  check_unary(op, x.dtype());
  visit_dtype(x.dtype(), [&]<class T>() {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      for (int64_t i = 0; i < out.numel(); ++i)
        at<T>(out, i) = unary_scalar<T>(op, at<T>(x, i), alpha, beta);
    }
  });
}

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  check_binary(op, a.dtype());
  visit_dtype(a.dtype(), [&]<class T>() {
    if constexpr (std::is_arithmetic_v<T>) {
      for (int64_t i = 0; i < out.numel(); ++i) {
        if (is_comparison(op)) {
          at<bool>(out, i) = compare_scalar<T>(op, at<T>(a, i), at<T>(b, i));
        } else if constexpr (!std::is_same_v<T, bool>) {
          at<T>(out, i) = binary_scalar<T>(op, at<T>(a, i), at<T>(b, i));
        }
      }
    }
  });
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_where(cond.dtype(), a.dtype());
  visit_dtype(a.dtype(), [&]<class T>() {
    for (int64_t i = 0; i < out.numel(); ++i)
      at<T>(out, i) = at<bool>(cond, i) ? at<T>(a, i) : at<T>(b, i);
  });
}

void reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x, int64_t outer,
            int64_t n, int64_t inner) {
  check_reduce(op, x.dtype());
  visit_dtype(x.dtype(), [&]<class T>() {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
      const T* px = x.data<T>();
      T* po = out.data<T>();
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          const T* row = px + o * n * inner + i;
          if (op == ReduceOp::Sum) {
            Acc acc = 0;
            for (int64_t j = 0; j < n; ++j) acc += Acc(row[j * inner]);
            po[o * inner + i] = T(acc);
            continue;
          }
          int64_t best = 0;
          for (int64_t j = 1; j < n; ++j) {
            T v = row[j * inner], b = row[best * inner];
            if (b != b) break;  // the first NaN wins
            bool better = op == ReduceOp::Max ? v > b : v < b;
            if (better || v != v) best = j;
          }
          po[o * inner + i] = n > 0 ? row[best * inner] : T(0);
          if (indices.defined()) indices.data<int64_t>()[o * inner + i] = best;
        }
      }
    }
  });
}

}  // namespace loom::cpu::ref

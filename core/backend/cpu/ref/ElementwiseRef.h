// Plain scalar reference for the elementwise and reduction kernels: the spec and test oracle of
// CpuElementwise.cpp / CpuReduce.cpp (and of the CUDA versions). The per-element formulas below
// are written the obvious way with <cmath>; the whole-tensor functions walk every element with
// index arithmetic on one thread (no StridedLoop, no SIMD), so they share no fast-path code.
// The dtype tables (which op supports which dtype) live here too, so fast and reference kernels
// accept and reject exactly the same inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/backend/Backend.h"

namespace loom::cpu::ref {

inline constexpr double kGeluBeta = 0.7978845608028654;  // sqrt(2/pi)
inline constexpr double kGeluKappa = 0.044715;

// Which dtypes a kernel accepts (everything else throws ValueError naming op, dtype and device).
bool unary_supports(UnaryOp op, DType dt);
bool binary_supports(BinaryOp op, DType dt);
bool is_comparison(BinaryOp op);
// Throws "<kernel>: <op> does not support dtype <dt> on cpu" when not supported.
void check_unary(UnaryOp op, DType dt);
void check_binary(BinaryOp op, DType dt);
void check_where(DType cond, DType dt);  // cond Bool; a/b f32, f64, i32, i64 or bool
void check_reduce(ReduceOp op, DType dt);  // f32, f64, i32, i64

// sigmoid(z) and 1 - sigmoid(z), both without cancellation or early underflow: with
// e = exp(-|z|) <= 1, sigmoid(|z|) = 1/(1+e) and sigmoid(-|z|) = e/(1+e).
template <class T>
inline void sigmoid_pair(T z, T& s, T& one_minus_s) {
  T e = std::exp(-std::fabs(z));
  T r = T(1) / (T(1) + e);
  s = z >= T(0) ? r : e * r;
  one_minus_s = z >= T(0) ? e * r : r;
  if (z != z) s = one_minus_s = z;
}

template <class T>
inline T sigmoid(T x) {
  T s, oms;
  sigmoid_pair(x, s, oms);
  return s;
}

// GPT-2's tanh-approximate GELU, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3),
// evaluated as x sigmoid(2u): the same function, but 1 + tanh(u) cancels for negative x (PyTorch's
// f32 result has relative error up to ~1e-3 there) while sigmoid(2u) does not.
template <class T>
inline T gelu(T x) {
  const T beta = T(kGeluBeta), kappa = T(kGeluKappa);
  T u = beta * (x + kappa * x * x * x);
  return x * sigmoid(u + u);
}

// dy * gelu'(x). With s = sigmoid(2u): 0.5 (1 + tanh u) = s and 1 - tanh^2 u = 4 s (1 - s), so
// gelu'(x) = s + 2 x s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
template <class T>
inline T gelu_backward(T dy, T x) {
  const T beta = T(kGeluBeta), kappa = T(kGeluKappa);
  T x_sq = x * x;
  T u = beta * (x + kappa * x_sq * x);
  T s, oms;
  sigmoid_pair(u + u, s, oms);
  T du = beta * (T(1) + T(3) * kappa * x_sq);
  return dy * (s + T(2) * x * s * oms * du);
}

template <class T>
inline T unary_scalar(UnaryOp op, T x, double alpha, double beta) {
  if constexpr (std::is_integral_v<T>) {
    switch (op) {
      case UnaryOp::Neg: return T(-x);
      case UnaryOp::Abs: return x < 0 ? T(-x) : x;
      case UnaryOp::AddScalar: return T(x + T(alpha));
      case UnaryOp::MulScalar: return T(x * T(alpha));
      default: return T(0);  // rejected by check_unary before any element is touched
    }
  } else {
    const T a = T(alpha), b = T(beta);
    switch (op) {
      case UnaryOp::Neg: return -x;
      case UnaryOp::Exp: return std::exp(x);
      case UnaryOp::Log: return std::log(x);
      case UnaryOp::Tanh: return std::tanh(x);
      case UnaryOp::Sqrt: return std::sqrt(x);
      case UnaryOp::Rsqrt: return T(1) / std::sqrt(x);
      case UnaryOp::Relu: return std::isnan(x) ? x : (x > T(0) ? x : T(0));
      case UnaryOp::Gelu: return gelu(x);
      case UnaryOp::Abs: return std::fabs(x);
      case UnaryOp::Sigmoid: return sigmoid(x);
      case UnaryOp::Square: return x * x;
      case UnaryOp::AddScalar: return x + a;
      case UnaryOp::MulScalar: return x * a;
      case UnaryOp::PowScalar: return std::pow(x, a);
      case UnaryOp::RSubScalar: return a - x;
      case UnaryOp::RDivScalar: return a / x;
      case UnaryOp::Clamp: return std::isnan(x) ? x : std::min(std::max(x, a), b);
    }
    return x;
  }
}

// Arithmetic binary ops (not comparisons). maximum/minimum propagate NaN; ties pick a.
template <class T>
inline T binary_scalar(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return T(a + b);
    case BinaryOp::Sub: return T(a - b);
    case BinaryOp::Mul: return T(a * b);
    case BinaryOp::Maximum: return (a >= b || a != a) ? a : b;
    case BinaryOp::Minimum: return (a <= b || a != a) ? a : b;
    default: break;
  }
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case BinaryOp::Div: return a / b;
      case BinaryOp::Pow: return std::pow(a, b);
      case BinaryOp::GeluBackward: return gelu_backward(a, b);
      case BinaryOp::ReluBackward: return b > T(0) ? a : T(0);
      case BinaryOp::TanhBackward: return a * ((T(1) - b) * (T(1) + b));  // no cancellation at |b|~1
      default: break;
    }
  }
  return T(0);  // rejected by check_binary before any element is touched
}

template <class T>
inline bool compare_scalar(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
    default: return false;
  }
}

// Whole-tensor reference kernels with the Backend's contracts (strided inputs allowed).
void unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha, double beta);
void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
// x contiguous (outer, n, inner) -> out (outer, inner); plain left-to-right sum in the output
// dtype's accumulator (f64 for f32); indices (I64) may be undefined.
void reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x, int64_t outer,
            int64_t n, int64_t inner);

}  // namespace loom::cpu::ref

// Elementwise ops with autograd. Each op allocates its output, broadcasts its inputs (expand views,
// no copies) and calls one backend kernel; its backward is written with these same ops (so it is
// itself differentiable) plus the fused GeluBackward/TanhBackward/ReluBackward kernels, and
// reduces broadcast gradients back to each input's shape with sum_to.
#include "core/ops/Elementwise.h"

#include "core/autograd/Function.h"
#include "core/autograd/GradMode.h"
#include "core/backend/Backend.h"
#include "core/ops/Reduction.h"

namespace loom {

namespace {

Tensor run_unary(UnaryOp op, const Tensor& x, double alpha = 0.0, double beta = 0.0) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel() > 0) backend_for(x.device()).unary(op, y, x, alpha, beta);
  return y;
}

void check_binary_args(const Tensor& a, const Tensor& b, const char* op) {
  LOOM_CHECK(a.defined() && b.defined(), op, ": expected defined tensors");
  LOOM_CHECK(a.dtype() == b.dtype(), op, ": expected inputs of equal dtype, got ",
             dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
             "; hint: convert one with .to(dtype)");
  LOOM_CHECK(a.device() == b.device(), op, ": expected inputs on the same device");
}

// Broadcasts a and b, allocates out (dtype `out_dt`) and runs the kernel. No autograd.
Tensor run_binary(BinaryOp op, const Tensor& a, const Tensor& b, DType out_dt) {
  const char* name = binary_op_name(op);
  check_binary_args(a, b, name);
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor y = Tensor::empty(s, out_dt, a.device());
  if (y.numel() > 0) backend_for(a.device()).binary(op, y, a.expand(s), b.expand(s));
  return y;
}

Tensor run_binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  return run_binary(op, a, b, a.dtype());
}

Tensor scalar_like(double v, const Tensor& t) { return Tensor::scalar(v, t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return Tensor::zeros(t.shape(), t.dtype(), t.device()); }

// ---- binary ops ---------------------------------------------------------------------------------

template <BinaryOp Op>
struct BinaryFn {
  static constexpr const char* kName = Op == BinaryOp::Add       ? "AddBackward"
                                       : Op == BinaryOp::Sub     ? "SubBackward"
                                       : Op == BinaryOp::Mul     ? "MulBackward"
                                       : Op == BinaryOp::Div     ? "DivBackward"
                                       : Op == BinaryOp::Pow     ? "PowBackward"
                                       : Op == BinaryOp::Maximum ? "MaximumBackward"
                                                                 : "MinimumBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& a, const Tensor& b) {
    Tensor y = run_binary(Op, a, b);
    ctx.shapes = {a.shape(), b.shape()};
    if constexpr (Op == BinaryOp::Mul || Op == BinaryOp::Div || Op == BinaryOp::Maximum ||
                  Op == BinaryOp::Minimum) {
      ctx.save(a, b);
    } else if constexpr (Op == BinaryOp::Pow) {
      ctx.save(a, b, y);
    }
    return y;
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    const Tensor& dy = g[0];
    Tensor da, db;
    if constexpr (Op == BinaryOp::Add) {
      da = dy;
      db = dy;
    } else if constexpr (Op == BinaryOp::Sub) {
      da = dy;
      if (ctx.needs_grad(1)) db = neg(dy);
    } else if constexpr (Op == BinaryOp::Mul) {
      if (ctx.needs_grad(0)) da = mul(dy, ctx.saved(1));
      if (ctx.needs_grad(1)) db = mul(dy, ctx.saved(0));
    } else if constexpr (Op == BinaryOp::Div) {
      Tensor a = ctx.saved(0), b = ctx.saved(1);
      if (ctx.needs_grad(0)) da = div(dy, b);
      if (ctx.needs_grad(1)) db = neg(div(mul(dy, a), mul(b, b)));  // -dy * a / b^2
    } else if constexpr (Op == BinaryOp::Pow) {
      pow_backward(ctx, dy, da, db);
    } else {  // Maximum / Minimum: ties send the gradient to a
      Tensor a = ctx.saved(0), b = ctx.saved(1);
      Tensor pick_a = Op == BinaryOp::Maximum ? ge(a, b) : le(a, b);
      Tensor zero = scalar_like(0.0, dy);
      if (ctx.needs_grad(0)) da = where(pick_a, dy, zero);
      if (ctx.needs_grad(1)) db = where(pick_a, zero, dy);
    }
    if (da.defined()) da = sum_to(da, ctx.shapes[0]);
    if (db.defined()) db = sum_to(db, ctx.shapes[1]);
    return {da, db};
  }
  // d(a^b)/da = b a^(b-1) (0 where b == 0), d(a^b)/db = a^b log(a) (0 where a == 0 and b >= 0),
  // the same conventions as PyTorch.
  static void pow_backward(autograd::Ctx& ctx, const Tensor& dy, Tensor& da, Tensor& db) {
    Tensor a = ctx.saved(0), b = ctx.saved(1), y = ctx.saved(2);
    Tensor zero = scalar_like(0.0, dy);
    if (ctx.needs_grad(0)) {
      Tensor d = mul(mul(dy, b), pow(a, sub(b, 1.0)));
      da = where(eq(b, zero), zero, d);
    }
    if (ctx.needs_grad(1)) {
      Tensor d = mul(mul(dy, y), log(a));
      Tensor a_zero = eq(a, zero).expand(d.shape());
      db = where(a_zero, where(ge(b, zero), zero, d), d);
    }
  }
};

// ---- unary ops ------------------------------------------------------------------------------------

constexpr const char* unary_backward_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "NegBackward";
    case UnaryOp::Exp: return "ExpBackward";
    case UnaryOp::Log: return "LogBackward";
    case UnaryOp::Tanh: return "TanhBackward";
    case UnaryOp::Sqrt: return "SqrtBackward";
    case UnaryOp::Rsqrt: return "RsqrtBackward";
    case UnaryOp::Relu: return "ReluBackward";
    case UnaryOp::Gelu: return "GeluBackward";
    case UnaryOp::Abs: return "AbsBackward";
    case UnaryOp::Sigmoid: return "SigmoidBackward";
    case UnaryOp::Square: return "SquareBackward";
    case UnaryOp::AddScalar: return "AddScalarBackward";
    case UnaryOp::MulScalar: return "MulScalarBackward";
    case UnaryOp::PowScalar: return "PowScalarBackward";
    case UnaryOp::RSubScalar: return "RSubScalarBackward";
    case UnaryOp::RDivScalar: return "RDivScalarBackward";
    case UnaryOp::Clamp: return "ClampBackward";
  }
  return "UnaryBackward";
}

// Ops whose backward needs the output y rather than the input x.
constexpr bool saves_output(UnaryOp op) {
  return op == UnaryOp::Exp || op == UnaryOp::Tanh || op == UnaryOp::Sqrt ||
         op == UnaryOp::Rsqrt || op == UnaryOp::Sigmoid;
}

template <UnaryOp Op>
struct UnaryFn {
  static constexpr const char* kName = unary_backward_name(Op);
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, double alpha, double beta) {
    LOOM_CHECK(x.defined(), unary_op_name(Op), ": expected a defined tensor");
    Tensor y = run_unary(Op, x, alpha, beta);
    ctx.reals = {alpha, beta};
    if constexpr (saves_output(Op)) {
      ctx.save(y);
    } else if constexpr (Op == UnaryOp::RDivScalar) {
      ctx.save(x, y);
    } else {
      ctx.save(x);
    }
    return y;
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    return {grad(ctx, g[0], ctx.saved(0), ctx.reals[0], ctx.reals[1])};
  }
  // s is the saved tensor: y for saves_output ops, x otherwise.
  static Tensor grad(autograd::Ctx& ctx, const Tensor& dy, const Tensor& s, double alpha,
                     double beta) {
    switch (Op) {
      case UnaryOp::Neg: return neg(dy);
      case UnaryOp::Exp: return mul(dy, s);
      case UnaryOp::Log: return div(dy, s);
      case UnaryOp::Tanh: return run_binary(BinaryOp::TanhBackward, dy, s);
      case UnaryOp::Sqrt: return div(mul(dy, 0.5), s);
      case UnaryOp::Rsqrt: return mul(mul(dy, -0.5), mul(s, square(s)));  // -y^3 / 2
      case UnaryOp::Relu: return run_binary(BinaryOp::ReluBackward, dy, s);
      case UnaryOp::Gelu: return run_binary(BinaryOp::GeluBackward, dy, s);
      case UnaryOp::Abs: {
        Tensor zero = scalar_like(0.0, dy);
        return where(gt(s, zero), dy, where(lt(s, zero), neg(dy), zero));
      }
      case UnaryOp::Sigmoid: return mul(dy, mul(s, rsub(1.0, s)));
      case UnaryOp::Square: return mul(dy, mul(s, 2.0));
      case UnaryOp::AddScalar: return dy;
      case UnaryOp::MulScalar: return mul(dy, alpha);
      case UnaryOp::PowScalar:
        if (alpha == 0.0) return zeros_like(dy);
        return mul(dy, mul(pow(s, alpha - 1.0), alpha));
      case UnaryOp::RSubScalar: return neg(dy);
      case UnaryOp::RDivScalar: return neg(div(mul(dy, ctx.saved(1)), s));  // -dy * y / x
      case UnaryOp::Clamp: {
        Tensor inside = where(ge(s, scalar_like(alpha, s)), dy, scalar_like(0.0, dy));
        return where(le(s, scalar_like(beta, s)), inside, scalar_like(0.0, dy));
      }
    }
    return Tensor();
  }
};

template <UnaryOp Op>
Tensor unary_op(const Tensor& x, double alpha = 0.0, double beta = 0.0) {
  return autograd::apply<UnaryFn<Op>>(x, alpha, beta);
}

struct WhereFn {
  static constexpr const char* kName = "WhereBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& cond, const Tensor& a, const Tensor& b) {
    check_binary_args(a, b, "where");
    LOOM_CHECK(cond.dtype() == DType::Bool, "where: expected a bool condition, got ",
               dtype_name(cond.dtype()));
    Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(),
                               "where");
    Tensor y = Tensor::empty(s, a.dtype(), a.device());
    if (y.numel() > 0) backend_for(a.device()).where(y, cond.expand(s), a.expand(s), b.expand(s));
    ctx.save(cond);
    ctx.shapes = {a.shape(), b.shape()};
    return y;
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    Tensor cond = ctx.saved(0), zero = scalar_like(0.0, g[0]);
    Tensor da, db;
    if (ctx.needs_grad(1)) da = sum_to(where(cond, g[0], zero), ctx.shapes[0]);
    if (ctx.needs_grad(2)) db = sum_to(where(cond, zero, g[0]), ctx.shapes[1]);
    return {Tensor(), da, db};
  }
};

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return autograd::apply<BinaryFn<BinaryOp::Add>>(a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return autograd::apply<BinaryFn<BinaryOp::Sub>>(a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return autograd::apply<BinaryFn<BinaryOp::Mul>>(a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return autograd::apply<BinaryFn<BinaryOp::Div>>(a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return autograd::apply<BinaryFn<BinaryOp::Pow>>(a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) {
  return autograd::apply<BinaryFn<BinaryOp::Maximum>>(a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return autograd::apply<BinaryFn<BinaryOp::Minimum>>(a, b);
}

Tensor add(const Tensor& a, double s) { return unary_op<UnaryOp::AddScalar>(a, s); }
Tensor sub(const Tensor& a, double s) { return unary_op<UnaryOp::AddScalar>(a, -s); }
Tensor rsub(double s, const Tensor& a) { return unary_op<UnaryOp::RSubScalar>(a, s); }
Tensor mul(const Tensor& a, double s) { return unary_op<UnaryOp::MulScalar>(a, s); }
Tensor div(const Tensor& a, double s) {
  // NB: x * (1/s) is not x / s bit for bit; divide exactly through the tensor path instead.
  return div(a, scalar_like(s, a));
}
Tensor rdiv(double s, const Tensor& a) { return unary_op<UnaryOp::RDivScalar>(a, s); }
Tensor pow(const Tensor& a, double exponent) { return unary_op<UnaryOp::PowScalar>(a, exponent); }

Tensor neg(const Tensor& x) { return unary_op<UnaryOp::Neg>(x); }
Tensor exp(const Tensor& x) { return unary_op<UnaryOp::Exp>(x); }
Tensor log(const Tensor& x) { return unary_op<UnaryOp::Log>(x); }
Tensor tanh(const Tensor& x) { return unary_op<UnaryOp::Tanh>(x); }
Tensor sqrt(const Tensor& x) { return unary_op<UnaryOp::Sqrt>(x); }
Tensor rsqrt(const Tensor& x) { return unary_op<UnaryOp::Rsqrt>(x); }
Tensor relu(const Tensor& x) { return unary_op<UnaryOp::Relu>(x); }
Tensor gelu(const Tensor& x) { return unary_op<UnaryOp::Gelu>(x); }
Tensor gelu_backward(const Tensor& dy, const Tensor& x) {
  return run_binary(BinaryOp::GeluBackward, dy, x);
}
Tensor sigmoid(const Tensor& x) { return unary_op<UnaryOp::Sigmoid>(x); }
Tensor square(const Tensor& x) { return unary_op<UnaryOp::Square>(x); }
Tensor abs(const Tensor& x) { return unary_op<UnaryOp::Abs>(x); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  LOOM_CHECK(lo <= hi, "clamp: expected lo <= hi, got ", lo, " > ", hi);
  return unary_op<UnaryOp::Clamp>(x, lo, hi);
}

Tensor eq(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::Eq, a, b, DType::Bool); }
Tensor ne(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::Ne, a, b, DType::Bool); }
Tensor lt(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::Lt, a, b, DType::Bool); }
Tensor le(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::Le, a, b, DType::Bool); }
Tensor gt(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::Gt, a, b, DType::Bool); }
Tensor ge(const Tensor& a, const Tensor& b) { return run_binary(BinaryOp::Ge, a, b, DType::Bool); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  return autograd::apply<WhereFn>(cond, a, b);
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, scalar_like(value, x), x);
}

}  // namespace loom

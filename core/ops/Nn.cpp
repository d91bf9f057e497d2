// Neural-network ops with autograd: softmax / log_softmax over any dim, layer_norm, rms_norm,
// swiglu, dropout, embedding and cross_entropy (Nn.h). Each op checks its arguments, makes inputs
// contiguous and calls one fused backend kernel (Backend.h) forward and one backward; the
// mean/sum of cross_entropy is composed from the reduction and elementwise ops, which are cheap
// next to it. Under bf16 autocast (Autocast.h) softmax takes bf16 CUDA inputs up to f32;
// layer_norm and rms_norm run in bf16 (f32 statistics), swiglu in bf16; embedding outputs are
// cast to bf16 (the residual stream's dtype). bf16 CUDA logits give an f32 loss
// (cross_entropy's kernels compute in f32).
#include "core/ops/Nn.h"

#include "core/autograd/Autocast.h"
#include "core/autograd/Function.h"
#include "core/backend/Backend.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"

namespace loom {

namespace {

using autograd::Ctx;

void check_float(const Tensor& x, const char* op, const char* what) {
  LOOM_CHECK(is_floating(x.dtype()), op, ": expected a floating-point ", what, ", got dtype ",
             dtype_name(x.dtype()));
}

// Side tensors (layer-norm statistics, cross-entropy loss and log-sum-exp) of a bf16 CUDA input
// are f32: the kernels compute in f32 and only the big tensors are stored in bf16.
DType side_dtype(const Tensor& x) {
  return x.dtype() == DType::BF16 && x.device().is_cuda() ? DType::F32 : x.dtype();
}

struct SoftmaxFn {  // over the last dim
  static constexpr const char* kName = "SoftmaxBackward";
  static Tensor forward(Ctx& ctx, const Tensor& x, bool log) {
    Tensor xc = x.contiguous();
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (y.numel() > 0) backend_for(x.device()).softmax_forward(y, xc, log);
    ctx.save(y);
    ctx.ints = {log ? 1 : 0};
    return y;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor y = ctx.saved(0);
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    if (dx.numel() > 0)
      backend_for(y.device()).softmax_backward(dx, g[0].contiguous(), y, ctx.ints[0] != 0);
    return {dx};
  }
};

Tensor softmax_impl(const Tensor& x_in, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  const Tensor x = autograd::autocast_f32(x_in);
  check_float(x, op, "input");
  if (x.dim() == 0) return autograd::apply<SoftmaxFn>(x.reshape({1}), log).reshape({});
  const int64_t d = wrap_dim(dim, x.dim(), op);
  if (d == x.dim() - 1) return autograd::apply<SoftmaxFn>(x, log);
  // Move `dim` last; the kernel's contiguous() copy does the actual transposition.
  return autograd::apply<SoftmaxFn>(x.transpose(d, -1), log).transpose(d, -1);
}

struct LayerNormFn {
  static constexpr const char* kName = "LayerNormBackward";
  static Tensor forward(Ctx& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                        double eps) {
    const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
    Tensor xc = x.contiguous();
    Tensor w = weight.defined() ? weight.contiguous() : Tensor();
    Tensor b = bias.defined() ? bias.contiguous() : Tensor();
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    const DType stat_dt = side_dtype(x);
    Tensor mean = Tensor::empty({N}, stat_dt, x.device());
    Tensor rstd = Tensor::empty({N}, stat_dt, x.device());
    if (y.numel() > 0) backend_for(x.device()).layernorm_forward(y, mean, rstd, xc, w, b, eps);
    ctx.save(xc, w, mean, rstd);
    ctx.ints = {bias.defined() ? 1 : 0};
    return y;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor x = ctx.saved(0), w = ctx.saved(1), mean = ctx.saved(2), rstd = ctx.saved(3);
    const int64_t C = x.size(-1);
    Tensor dx, dw, db;
    if (ctx.needs_grad(0)) dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (w.defined() && ctx.needs_grad(1)) dw = Tensor::empty({C}, x.dtype(), x.device());
    if (ctx.ints[0] != 0 && ctx.needs_grad(2)) db = Tensor::empty({C}, x.dtype(), x.device());
    if (x.numel() > 0) {
      backend_for(x.device()).layernorm_backward(dx, dw, db, g[0].contiguous(), x, w, mean, rstd);
    } else {  // no rows: the parameter gradients are sums over nothing
      if (dw.defined()) dw.zero_();
      if (db.defined()) db.zero_();
    }
    return {dx, dw, db};
  }
};

struct RmsNormFn {
  static constexpr const char* kName = "RmsNormBackward";
  static Tensor forward(Ctx& ctx, const Tensor& x, const Tensor& weight, double eps) {
    const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
    Tensor xc = x.contiguous();
    Tensor w = weight.defined() ? weight.contiguous() : Tensor();
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    Tensor rstd = Tensor::empty({N}, side_dtype(x), x.device());
    if (y.numel() > 0) backend_for(x.device()).rmsnorm_forward(y, rstd, xc, w, eps);
    ctx.save(xc, w, rstd);
    return y;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor x = ctx.saved(0), w = ctx.saved(1), rstd = ctx.saved(2);
    Tensor dx, dw;
    if (ctx.needs_grad(0)) dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (w.defined() && ctx.needs_grad(1)) dw = Tensor::empty({x.size(-1)}, x.dtype(), x.device());
    if (x.numel() > 0)
      backend_for(x.device()).rmsnorm_backward(dx, dw, g[0].contiguous(), x, w, rstd);
    else if (dw.defined())
      dw.zero_();  // no rows: the weight gradient is a sum over nothing
    return {dx, dw};
  }
};

Shape half_last(const Shape& s) {
  Shape out = s;
  out.back() /= 2;
  return out;
}

struct SwigluFn {  // a (..., 2F) = [gate | up] -> (..., F)
  static constexpr const char* kName = "SwigluBackward";
  static Tensor forward(Ctx& ctx, const Tensor& a) {
    Tensor ac = a.contiguous();
    Tensor y = Tensor::empty(half_last(a.shape()), a.dtype(), a.device());
    if (y.numel() > 0) backend_for(a.device()).swiglu_forward(y, ac);
    ctx.save(ac);
    return y;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    return {swiglu_backward(g[0], ctx.saved(0))};
  }
};

// The mask of one dropout call: Bernoulli(1-p) from Philox counters [offset, offset+numel),
// scaled by 1/(1-p). Regenerated in backward instead of saved (it is cheap to recompute).
Tensor dropout_mask(const Shape& shape, DType dtype, Device device, double p, uint64_t seed,
                    uint64_t offset) {
  Backend& be = backend_for(device);
  Tensor mask = Tensor::empty(shape, dtype, device);
  if (mask.numel() == 0) return mask;
  be.fill_random(mask, RandomKind::Bernoulli, seed, offset, 1.0 - p, 0.0);
  be.unary(UnaryOp::MulScalar, mask, mask, p >= 1.0 ? 0.0 : 1.0 / (1.0 - p), 0.0);
  return mask;
}

struct DropoutFn {
  static constexpr const char* kName = "DropoutBackward";
  static Tensor forward(Ctx& ctx, const Tensor& x, double p, uint64_t seed, uint64_t offset) {
    Tensor mask = dropout_mask(x.shape(), x.dtype(), x.device(), p, seed, offset);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (y.numel() > 0) backend_for(x.device()).binary(BinaryOp::Mul, y, x, mask);
    ctx.reals = {p};
    ctx.ints = {int64_t(seed), int64_t(offset)};
    return y;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    const Tensor& gy = g[0];
    Tensor mask = dropout_mask(gy.shape(), gy.dtype(), gy.device(), ctx.reals[0],
                               uint64_t(ctx.ints[0]), uint64_t(ctx.ints[1]));
    Tensor dx = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
    if (dx.numel() > 0) backend_for(gy.device()).binary(BinaryOp::Mul, dx, gy, mask);
    return {dx};
  }
};

struct EmbeddingFn {
  static constexpr const char* kName = "EmbeddingBackward";
  static Tensor forward(Ctx& ctx, const Tensor& weight, const Tensor& ids) {
    const int64_t V = weight.size(0), C = weight.size(1);
    Tensor idx = ids.contiguous().reshape({ids.numel()});
    Shape out_shape = ids.shape();
    out_shape.push_back(C);
    Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
    if (out.numel() > 0 || idx.numel() > 0)
      backend_for(weight.device()).index_select(out, weight.contiguous(), idx, 1, V, C);
    ctx.save(idx);
    ctx.ints = {V, C};
    return out;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor idx = ctx.saved(0);
    const int64_t V = ctx.ints[0], C = ctx.ints[1];
    Tensor dw = Tensor::zeros({V, C}, g[0].dtype(), g[0].device());
    if (idx.numel() > 0) backend_for(dw.device()).index_add(dw, g[0].contiguous(), idx, 1, V, C);
    return {dw, Tensor()};
  }
};

struct CrossEntropyFn {  // per-row losses (Reduction::None)
  static constexpr const char* kName = "CrossEntropyBackward";
  static Tensor forward(Ctx& ctx, const Tensor& logits, const Tensor& targets,
                        int64_t ignore_index) {
    const int64_t N = logits.size(0);
    Tensor lc = logits.contiguous(), tc = targets.contiguous();
    Tensor loss = Tensor::empty({N}, side_dtype(logits), logits.device());
    Tensor lse = Tensor::empty({N}, side_dtype(logits), logits.device());
    if (N > 0) backend_for(logits.device()).cross_entropy_forward(loss, lse, lc, tc, ignore_index);
    ctx.save(lc, tc, lse);
    ctx.ints = {ignore_index};
    return loss;
  }
  static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> g) {
    Tensor logits = ctx.saved(0), targets = ctx.saved(1), lse = ctx.saved(2);
    Tensor d = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
    if (d.numel() > 0) {
      backend_for(d.device()).cross_entropy_backward(d, g[0].contiguous(), logits, targets, lse,
                                                     ctx.ints[0]);
    }
    return {d, Tensor()};
  }
};

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor layer_norm(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in,
                  double eps) {
  // Autocast: bf16 in and out (weight and bias cast too), f32 statistics and arithmetic.
  const Tensor x = autograd::autocast_lower(x_in), weight = autograd::autocast_lower(weight_in),
               bias = autograd::autocast_lower(bias_in);
  check_float(x, "layer_norm", "input");
  LOOM_CHECK(x.dim() >= 1, "layer_norm: expected an input with at least 1 dim, got a 0-d tensor");
  const int64_t C = x.size(-1);
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    LOOM_CHECK(p->shape() == Shape{C}, "layer_norm: expected weight/bias of shape (", C,
               "), got ", p->shape());
    LOOM_CHECK(p->dtype() == x.dtype() && p->device() == x.device(), "layer_norm: expected "
               "weight/bias of dtype ", dtype_name(x.dtype()), " on the input's device, got ",
               dtype_name(p->dtype()));
  }
  LOOM_CHECK(eps >= 0, "layer_norm: expected eps >= 0, got ", eps);
  return autograd::apply<LayerNormFn>(x, weight, bias, eps);
}

Tensor rms_norm(const Tensor& x_in, const Tensor& weight_in, double eps) {
  const Tensor x = autograd::autocast_lower(x_in), weight = autograd::autocast_lower(weight_in);
  check_float(x, "rms_norm", "input");
  LOOM_CHECK(x.dim() >= 1, "rms_norm: expected an input with at least 1 dim, got a 0-d tensor");
  if (weight.defined()) {
    LOOM_CHECK(weight.shape() == Shape{x.size(-1)}, "rms_norm: expected weight of shape (",
               x.size(-1), "), got ", weight.shape());
    LOOM_CHECK(weight.dtype() == x.dtype() && weight.device() == x.device(), "rms_norm: expected ",
               "a weight of dtype ", dtype_name(x.dtype()), " on the input's device, got ",
               dtype_name(weight.dtype()));
  }
  LOOM_CHECK(eps >= 0, "rms_norm: expected eps >= 0, got ", eps);
  return autograd::apply<RmsNormFn>(x, weight, eps);
}

namespace {
void check_swiglu_input(const Tensor& a, const char* op) {
  check_float(a, op, "input");
  LOOM_CHECK(a.dim() >= 1 && a.size(-1) % 2 == 0, op, ": expected a (..., 2F) of [gate | up], ",
             "got ", a.shape());
}
}  // namespace

Tensor swiglu(const Tensor& a_in) {
  const Tensor a = autograd::autocast_lower(a_in);
  check_swiglu_input(a, "swiglu");
  return autograd::apply<SwigluFn>(a);
}

Tensor swiglu_backward(const Tensor& dy, const Tensor& a) {
  check_swiglu_input(a, "swiglu_backward");
  LOOM_CHECK(dy.shape() == half_last(a.shape()) && dy.dtype() == a.dtype() &&
                 dy.device() == a.device(),
             "swiglu_backward: expected dy of shape ", half_last(a.shape()), " and a's dtype, got ",
             dy.shape(), " ", dtype_name(dy.dtype()));
  Tensor da = Tensor::empty(a.shape(), a.dtype(), a.device());
  if (da.numel() > 0)
    backend_for(a.device()).swiglu_backward(da, dy.contiguous(), a.contiguous());
  return da;
}

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  LOOM_CHECK(p >= 0.0 && p <= 1.0, "dropout: expected p in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  check_float(x, "dropout", "input");
  const uint64_t offset = gen.next_offset(uint64_t(x.numel()));
  return autograd::apply<DropoutFn>(x, p, gen.seed(), offset);
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  LOOM_CHECK(weight.dim() == 2, "embedding: expected weight of shape (V,C), got ", weight.shape());
  LOOM_CHECK(ids.dtype() == DType::I64, "embedding: expected ids of dtype i64, got ",
             dtype_name(ids.dtype()));
  LOOM_CHECK(ids.device() == weight.device(), "embedding: expected ids on the weight's device");
  return autograd::autocast_lower(autograd::apply<EmbeddingFn>(weight, ids));
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     Reduction reduction) {
  LOOM_CHECK(logits.dim() == 2, "cross_entropy: expected logits of shape (N,V), got ",
             logits.shape());
  check_float(logits, "cross_entropy", "logits");
  LOOM_CHECK(targets.dtype() == DType::I64, "cross_entropy: expected targets of dtype i64, got ",
             dtype_name(targets.dtype()));
  LOOM_CHECK(targets.shape() == Shape{logits.size(0)}, "cross_entropy: expected targets of shape (",
             logits.size(0), "), got ", targets.shape());
  LOOM_CHECK(targets.device() == logits.device(), "cross_entropy: expected targets on the logits' "
             "device");
  Tensor loss = autograd::apply<CrossEntropyFn>(logits, targets, ignore_index);
  if (reduction == Reduction::None) return loss;
  if (reduction == Reduction::Sum) return sum(loss);
  // Mean over non-ignored rows, computed on the device (no host sync). With no such row the sum
  // is 0 and the count is clamped to 1, giving 0.
  Tensor ignore = Tensor::scalar(double(ignore_index), DType::I64, targets.device());
  Tensor count = sum(ne(targets, ignore).to(loss.dtype()));
  return div(sum(loss), clamp(count, 1.0, double(logits.size(0) > 0 ? logits.size(0) : 1)));
}

}  // namespace loom

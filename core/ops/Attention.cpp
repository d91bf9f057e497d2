// scaled_dot_product_attention: the autograd wrapper of Backend::attention_forward/backward.
// Forward saves q, k, v (the inputs), the output and the (B,H,T) log-sum-exp; the (T,T)
// probabilities are never stored (backward recomputes them tile by tile). Under bf16 autocast q,
// k, v on CUDA are cast to bf16; bf16 attention keeps its log-sum-exp in f32.
#include "core/ops/Attention.h"

#include <cmath>

#include "core/autograd/Autocast.h"
#include "core/autograd/Function.h"
#include "core/backend/Backend.h"

namespace loom {

namespace {

struct AttentionFn {
  static constexpr const char* kName = "ScaledDotProductAttentionBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& q_in, const Tensor& k_in,
                        const Tensor& v_in, bool causal, double scale) {
    const Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
    const DType lse_dt = q.dtype() == DType::BF16 ? DType::F32 : q.dtype();
    Tensor lse = Tensor::empty({q.size(0), q.size(1), q.size(2)}, lse_dt, q.device());
    backend_for(q.device()).attention_forward(out, lse, q, k, v, scale, causal);
    ctx.save(q, k, v, out, lse);
    ctx.ints = {causal ? 1 : 0};
    ctx.reals = {scale};
    return out;
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    const Tensor q = ctx.saved(0), k = ctx.saved(1), v = ctx.saved(2);
    const Tensor out = ctx.saved(3), lse = ctx.saved(4);
    const Tensor dout = g[0].contiguous();
    Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());
    Tensor dk = Tensor::empty(q.shape(), q.dtype(), q.device());
    Tensor dv = Tensor::empty(q.shape(), q.dtype(), q.device());
    backend_for(q.device()).attention_backward(dq, dk, dv, dout, q, k, v, out, lse,
                                               ctx.reals[0], ctx.ints[0] != 0);
    return {dq, dk, dv};
  }
};

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    bool causal, double scale) {
  LOOM_CHECK(q_in.defined() && k_in.defined() && v_in.defined(),
             "attention: expected defined q, k, v");
  const Tensor q = autograd::autocast_lower(q_in), k = autograd::autocast_lower(k_in),
               v = autograd::autocast_lower(v_in);
  LOOM_CHECK(q.dim() == 4 && k.shape() == q.shape() && v.shape() == q.shape(),
             "attention: expected q, k, v of one shape (B,H,T,D), got ", q.shape(), ", ",
             k.shape(), ", ", v.shape());
  LOOM_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(),
             "attention: expected q, k, v of one dtype, got ", dtype_name(q.dtype()), ", ",
             dtype_name(k.dtype()), ", ", dtype_name(v.dtype()));
  LOOM_CHECK(q.dtype() == DType::F32 || q.dtype() == DType::F64 ||
                 (q.dtype() == DType::BF16 && q.device().is_cuda()),
             "attention: expected dtype f32 or f64 (or bf16 on cuda), got ", dtype_name(q.dtype()),
             " on ", q.device().str());
  LOOM_CHECK(q.device() == k.device() && q.device() == v.device(),
             "attention: expected q, k, v on one device");
  LOOM_CHECK(q.size(3) >= 1, "attention: expected head size D >= 1, got ", q.size(3));
  if (scale <= 0.0) scale = 1.0 / std::sqrt(double(q.size(3)));
  return autograd::apply<AttentionFn>(q, k, v, causal, scale);
}

}  // namespace loom

// rope: the autograd wrapper of Backend::rope. Forward saves only the tables (x is not needed:
// the rotation is linear), backward applies the inverse rotation to the gradient. Under bf16
// autocast x on CUDA is cast to bf16 and the tables stay f32.
#include "core/ops/Rope.h"

#include "core/autograd/Autocast.h"
#include "core/autograd/Function.h"
#include "core/backend/Backend.h"

namespace loom {

namespace {

struct RopeFn {
  static constexpr const char* kName = "RopeBackward";
  static Tensor forward(autograd::Ctx& ctx, const Tensor& x, const Tensor& cos, const Tensor& sin) {
    Tensor xc = x.contiguous();
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (y.numel() > 0) backend_for(x.device()).rope(y, xc, cos, sin, /*inverse=*/false);
    ctx.save(cos, sin);
    return y;
  }
  static std::vector<Tensor> backward(autograd::Ctx& ctx, std::vector<Tensor> g) {
    const Tensor cos = ctx.saved(0), sin = ctx.saved(1);
    Tensor dy = g[0].contiguous();
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
    if (dx.numel() > 0) backend_for(dx.device()).rope(dx, dy, cos, sin, /*inverse=*/true);
    return {dx, Tensor(), Tensor()};
  }
};

}  // namespace

Tensor rope(const Tensor& x_in, const Tensor& cos_in, const Tensor& sin_in) {
  const Tensor x = autograd::autocast_lower(x_in);
  LOOM_CHECK(x.defined() && x.dim() == 4 && x.size(3) % 2 == 0,
             "rope: expected x of shape (B,T,H,D) with D even, got ",
             x.defined() ? shape_str(x.shape()) : std::string("none"));
  LOOM_CHECK(is_floating(x.dtype()), "rope: expected a floating-point input, got dtype ",
             dtype_name(x.dtype()));
  const Shape table{x.size(1), x.size(3) / 2};
  const DType table_dt = x.dtype() == DType::BF16 ? DType::F32 : x.dtype();
  for (const Tensor* t : {&cos_in, &sin_in}) {
    LOOM_CHECK(t->defined() && t->shape() == table && t->dtype() == table_dt &&
                   t->device() == x.device(),
               "rope: expected cos/sin tables of shape ", table, " and dtype ",
               dtype_name(table_dt), " on the input's device, got ",
               t->defined() ? shape_str(t->shape()) : std::string("none"));
  }
  return autograd::apply<RopeFn>(x, cos_in.detach().contiguous(), sin_in.detach().contiguous());
}

}  // namespace loom

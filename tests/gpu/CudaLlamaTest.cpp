// CUDA vs CPU backend for the Llama family's kernels (core/backend/cuda/CudaLlama.cu): RMSNorm
// forward and backward (with and without a weight), rotary embedding and its inverse (in place
// too), SwiGLU forward and backward; random inputs in f32 (NMSE <= kNmseF32) and in bf16 against
// the f32 CPU result on bf16-exact inputs (NMSE <= kNmseBf16), as CudaNnTest does for LayerNorm.
#include <gtest/gtest.h>

#include "core/backend/Backend.h"
#include "tests/gpu/GpuCompare.h"

namespace loom::gputest {
namespace {

Backend& cpu() { return cpu_backend(); }
Backend& cuda() { return *cuda_backend(); }
Tensor dev_empty(const Shape& s, DType dt) { return Tensor::empty(s, dt, Device::cuda()); }
Tensor exact(const Tensor& t, DType dt) { return dt == DType::BF16 ? bf16_exact(t) : t; }
double bound(DType dt) { return dt == DType::BF16 ? kNmseBf16 : kNmseF32; }

void rmsnorm_case(int64_t N, int64_t C, bool weight, DType dt) {
  Tensor x = exact(randn({N, C}, 1, 0.3, 2.0), dt), w = exact(randn({C}, 2, 1.0, 0.3), dt);
  Tensor dy = exact(randn({N, C}, 3), dt), wt = weight ? w : Tensor();
  Tensor y = Tensor::empty({N, C}), rstd = Tensor::empty({N});
  Tensor dx = Tensor::empty({N, C}), dw = Tensor::empty({C});
  cpu().rmsnorm_forward(y, rstd, x, wt, 1e-5);
  cpu().rmsnorm_backward(dx, weight ? dw : Tensor(), dy, x, wt, rstd);
  const DType side = dt == DType::BF16 ? DType::F32 : dt;  // rstd of bf16 input is f32
  auto g = [&](const Tensor& t) { return t.defined() ? gpu(t.to(dt)) : Tensor(); };
  Tensor yg = dev_empty({N, C}, dt), rg = dev_empty({N}, side);
  cuda().rmsnorm_forward(yg, rg, g(x), g(wt), 1e-5);
  Tensor dxg = dev_empty({N, C}, dt), dwg = dev_empty({C}, dt);
  // Backward from the CPU's rstd so forward and backward are checked independently.
  cuda().rmsnorm_backward(dxg, weight ? dwg : Tensor(), g(dy), g(x), g(wt), gpu(rstd.to(side)));
  const std::string what = std::string(dtype_name(dt)) + " C=" + std::to_string(C);
  EXPECT_TRUE(nmse_le(yg, y, bound(dt))) << what;
  EXPECT_TRUE(nmse_le(rg, rstd, bound(dt))) << what;
  EXPECT_TRUE(nmse_le(dxg, dx, bound(dt))) << what;
  if (weight) {
    EXPECT_TRUE(nmse_le(dwg, dw, bound(dt))) << what;
  }
}

TEST(CudaLlamaTest, RmsnormMatchesCpu) {
  LOOM_REQUIRE_GPU();
  rmsnorm_case(300, 768, true, DType::F32);
  rmsnorm_case(65, 33, false, DType::F32);
  rmsnorm_case(130, 256, true, DType::BF16);
}

TEST(CudaLlamaTest, RopeAndItsInverseMatchCpu) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    const int64_t B = 2, T = 7, H = 3, D = 10;
    Tensor x = exact(randn({B, T, H, D}, 4), dt);
    Tensor cos = exact(randn({T, D / 2}, 5), dt), sin = exact(randn({T, D / 2}, 6), dt);
    for (bool inverse : {false, true}) {
      Tensor y = Tensor::empty({B, T, H, D});
      cpu().rope(y, x, cos, sin, inverse);
      Tensor xg = gpu(x.to(dt)), yg = dev_empty({B, T, H, D}, dt);
      cuda().rope(yg, xg, gpu(cos), gpu(sin), inverse);  // tables f32 for bf16 (Backend.h)
      EXPECT_TRUE(nmse_le(yg, y, bound(dt))) << dtype_name(dt) << " inverse " << inverse;
      cuda().rope(xg, xg, gpu(cos), gpu(sin), inverse);  // in place
      EXPECT_TRUE(nmse_le(xg, y, bound(dt))) << dtype_name(dt) << " in place";
    }
  }
}

TEST(CudaLlamaTest, SwigluForwardBackwardMatchCpu) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    const int64_t N = 37, F = 130;
    Tensor a = exact(randn({N, 2 * F}, 7, 0.0, 2.0), dt), dy = exact(randn({N, F}, 8), dt);
    Tensor y = Tensor::empty({N, F}), da = Tensor::empty({N, 2 * F});
    cpu().swiglu_forward(y, a);
    cpu().swiglu_backward(da, dy, a);
    Tensor yg = dev_empty({N, F}, dt), dag = dev_empty({N, 2 * F}, dt);
    cuda().swiglu_forward(yg, gpu(a.to(dt)));
    cuda().swiglu_backward(dag, gpu(dy.to(dt)), gpu(a.to(dt)));
    EXPECT_TRUE(nmse_le(yg, y, bound(dt))) << dtype_name(dt);
    EXPECT_TRUE(nmse_le(dag, da, bound(dt))) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace loom::gputest

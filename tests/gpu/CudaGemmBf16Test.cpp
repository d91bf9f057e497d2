// bf16 GEMMs whose rows are not 16-byte aligned (an odd vocabulary such as GPT-2's 50257: the LM
// head's logits, dX and dW; cuBLASLt runs them on slower kernels), and bf16 inputs with an f32
// output (the attention scores). Both against the CPU f32 GEMM on bf16-exact inputs.
#include <gtest/gtest.h>

#include "tests/gpu/GpuCompare.h"

namespace loom {
namespace {

using gputest::bf16_exact;
using gputest::gpu;
using gputest::kNmseBf16;
using gputest::nmse_le;

Tensor rnd(const Shape& s, uint64_t seed) { return bf16_exact(gputest::randn(s, seed)); }
Tensor dev(const Tensor& t) { return gpu(t.to(DType::BF16)); }

TEST(CudaGemmBf16Test, OddRowPitchesMatchCpu) {
  LOOM_REQUIRE_GPU();
  const int64_t M = 64, V = 1001, K = 96;  // V odd: rows of V bf16 are not 16-byte aligned
  Tensor x = rnd({M, K}, 1), w = rnd({V, K}, 2), g = rnd({M, V}, 3), c0 = rnd({M, V}, 4);
  Backend& cpu = cpu_backend();
  Backend& cuda = *cuda_backend();
  // logits (M,V) = x w^T, then accumulate: logits += x w^T (beta = 1)
  Tensor want = c0.clone();
  cpu.gemm(want, x, w, false, true, 1.0, 1.0);
  Tensor got = dev(c0);
  cuda.gemm(got, dev(x), dev(w), false, true, 1.0, 1.0);
  EXPECT_TRUE(nmse_le(got, want, kNmseBf16)) << "logits += x w^T";
  // dx (M,K) = g w; dw (V,K) = g^T x
  Tensor dx = Tensor::empty({M, K}), dw = Tensor::empty({V, K});
  cpu.gemm(dx, g, w, false, false, 1.0, 0.0);
  cpu.gemm(dw, g, x, true, false, 1.0, 0.0);
  Tensor dxg = Tensor::empty({M, K}, DType::BF16, Device::cuda(0));
  Tensor dwg = Tensor::empty({V, K}, DType::BF16, Device::cuda(0));
  cuda.gemm(dxg, dev(g), dev(w), false, false, 1.0, 0.0);
  cuda.gemm(dwg, dev(g), dev(x), true, false, 1.0, 0.0);
  EXPECT_TRUE(nmse_le(dxg, dx, kNmseBf16)) << "dx = g w";
  EXPECT_TRUE(nmse_le(dwg, dw, kNmseBf16)) << "dw = g^T x";
}

TEST(CudaGemmBf16Test, Bf16InputsF32OutputMatchCpu) {
  LOOM_REQUIRE_GPU();
  Tensor a = rnd({3, 40, 64}, 5), b = rnd({3, 50, 64}, 6);
  Tensor want = Tensor::empty({3, 40, 50});
  cpu_backend().gemm(want, a, b, false, true, 0.5, 0.0);
  Tensor got = Tensor::empty({3, 40, 50}, DType::F32, Device::cuda(0));
  cuda_backend()->gemm(got, dev(a), dev(b), false, true, 0.5, 0.0);
  // f32 output of exact bf16 products accumulated in f32: only summation order differs, so the
  // fp32 bound applies.
  EXPECT_TRUE(nmse_le(got, want, gputest::kNmseF32));
}

}  // namespace
}  // namespace loom

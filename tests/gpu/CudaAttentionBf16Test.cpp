// bf16 attention on cuBLASLt (CudaAttention.cu's GEMM path) against the CPU f32 flash kernel on
// bf16-exact inputs (TESTPLAN G-1 bf16 bound, GpuCompare.h), with the f32 log-sum-exp the ops
// layer uses; bitwise determinism; and a call large enough to be split into chunks of heads.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tests/gpu/GpuCompare.h"

namespace loom {
namespace {

using gputest::bf16_exact;
using gputest::equal_values;
using gputest::gpu;
using gputest::kNmseBf16;
using gputest::nmse_le;

struct Grads { Tensor out, lse, dq, dk, dv; };

// q, k, v, dout are bf16-exact f32 CPU tensors (B,H,T,D); returns the results of `be`.
Grads run(Backend& be, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
          bool causal, DType dt) {
  const Device dev = be.device_type() == DeviceType::CPU ? Device::cpu() : Device::cuda(0);
  auto on = [&](const Tensor& t) { return t.to(dt).contiguous().to(dev); };
  const Shape s = q.shape();
  const double scale = 1.0 / std::sqrt(double(s[3]));
  Grads g{Tensor::empty(s, dt, dev), Tensor::empty({s[0], s[1], s[2]}, DType::F32, dev),
          Tensor::empty(s, dt, dev), Tensor::empty(s, dt, dev), Tensor::empty(s, dt, dev)};
  const Tensor qd = on(q), kd = on(k), vd = on(v), dod = on(dout);
  be.attention_forward(g.out, g.lse, qd, kd, vd, scale, causal);
  be.attention_backward(g.dq, g.dk, g.dv, dod, qd, kd, vd, g.out, g.lse, scale, causal);
  return g;
}

Tensor rnd(const Shape& s, uint64_t seed) { return bf16_exact(gputest::randn(s, seed)); }

void expect_close(const Grads& got, const Grads& want, const std::string& what) {
  EXPECT_TRUE(nmse_le(got.out, want.out, kNmseBf16)) << what << " out";
  EXPECT_TRUE(nmse_le(got.lse, want.lse, kNmseBf16)) << what << " lse";
  EXPECT_TRUE(nmse_le(got.dq, want.dq, kNmseBf16)) << what << " dq";
  EXPECT_TRUE(nmse_le(got.dk, want.dk, kNmseBf16)) << what << " dk";
  EXPECT_TRUE(nmse_le(got.dv, want.dv, kNmseBf16)) << what << " dv";
}

TEST(CudaAttentionBf16Test, GemmPathMatchesCpu) {
  LOOM_REQUIRE_GPU();
  for (bool causal : {true, false}) {
    for (Shape s : {Shape{2, 3, 256, 64}, Shape{1, 2, 77, 40}, Shape{1, 1, 1, 16}}) {
      Tensor q = rnd(s, 1), k = rnd(s, 2), v = rnd(s, 3), dout = rnd(s, 4);
      Grads want = run(cpu_backend(), q, k, v, dout, causal, DType::F32);
      Grads got = run(*cuda_backend(), q, k, v, dout, causal, DType::BF16);
      expect_close(got, want, "T=" + std::to_string(s[2]) + (causal ? " causal" : ""));
    }
  }
}

TEST(CudaAttentionBf16Test, IsBitwiseDeterministic) {
  LOOM_REQUIRE_GPU();
  Shape s{2, 4, 300, 64};
  Tensor q = rnd(s, 5), k = rnd(s, 6), v = rnd(s, 7), dout = rnd(s, 8);
  Grads a = run(*cuda_backend(), q, k, v, dout, true, DType::BF16);
  Grads b = run(*cuda_backend(), q, k, v, dout, true, DType::BF16);
  EXPECT_TRUE(equal_values(a.out, b.out));
  EXPECT_TRUE(equal_values(a.dq, b.dq));
  EXPECT_TRUE(equal_values(a.dk, b.dk));
  EXPECT_TRUE(equal_values(a.dv, b.dv));
}

TEST(CudaAttentionBf16Test, ChunksOfHeadsMatchCpuPerHead) {
  LOOM_REQUIRE_GPU();
  // 257 heads of T=1024: 257 * 1024^2 * 4 bytes of f32 scores exceed the 1 GiB chunk budget, so
  // the call runs in chunks; heads at both ends and a chunk boundary are checked on the CPU.
  const int64_t H = 257, T = 1024, D = 64;
  Shape s{1, H, T, D};
  Tensor q = rnd(s, 9), k = rnd(s, 10), v = rnd(s, 11), dout = rnd(s, 12);
  Grads got = run(*cuda_backend(), q, k, v, dout, true, DType::BF16);
  for (int64_t h : {int64_t(0), int64_t(255), int64_t(256)}) {
    auto head = [&](const Tensor& t) { return t.narrow(1, h, 1).contiguous(); };
    Grads want = run(cpu_backend(), head(q), head(k), head(v), head(dout), true, DType::F32);
    Grads gh{head(got.out), got.lse.narrow(1, h, 1).contiguous(), head(got.dq), head(got.dk),
             head(got.dv)};
    expect_close(gh, want, "head " + std::to_string(h));
  }
}

}  // namespace
}  // namespace loom

// CUDA vs CPU backend for the neural-network, attention, indexing and optimizer kernels
// (TESTPLAN G-1): softmax, layernorm, flash attention, fused cross-entropy, index_select /
// index_add / gather / scatter_add and AdamW, each on random inputs in f32 (NMSE <= 1e-7) and,
// where the kernel takes bf16, in bf16 against an f32 CPU reference on bf16-exact inputs.
#include <gtest/gtest.h>

#include "core/backend/Backend.h"
#include "tests/gpu/GpuCompare.h"

namespace loom::gputest {
namespace {

Backend& cpu() { return cpu_backend(); }
Backend& cuda() { return *cuda_backend(); }
Tensor dev_empty(const Shape& s, DType dt = DType::F32) { return Tensor::empty(s, dt, Device::cuda()); }

TEST(CudaNnTest, SoftmaxForwardBackwardMatchCpu) {
  LOOM_REQUIRE_GPU();
  for (bool log : {false, true}) {
    for (int64_t cols : {7, 256, 3001}) {
      Tensor x = randn({19, cols}, 1, 0.0, 3.0), dy = randn({19, cols}, 2);
      Tensor y = Tensor::empty({19, cols}), dx = Tensor::empty({19, cols});
      cpu().softmax_forward(y, x, log);
      cpu().softmax_backward(dx, dy, y, log);
      Tensor yg = dev_empty({19, cols}), dxg = dev_empty({19, cols});
      cuda().softmax_forward(yg, gpu(x), log);
      cuda().softmax_backward(dxg, gpu(dy), gpu(y), log);
      EXPECT_TRUE(nmse_le(yg, y, kNmseF32)) << "log " << log << " cols " << cols;
      EXPECT_TRUE(nmse_le(dxg, dx, kNmseF32)) << "log " << log << " cols " << cols;
    }
  }
}

void layernorm_case(int64_t N, int64_t C, bool with_bias, DType dt, double bound) {
  Tensor x = randn({N, C}, 3, 0.5, 2.0), w = randn({C}, 4), b = randn({C}, 5), dy = randn({N, C}, 6);
  if (dt == DType::BF16) { x = bf16_exact(x); w = bf16_exact(w); b = bf16_exact(b); dy = bf16_exact(dy); }
  Tensor bias = with_bias ? b : Tensor();
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  cpu().layernorm_forward(y, mean, rstd, x, w, bias, 1e-5);
  Tensor dx = Tensor::empty({N, C}), dw = Tensor::empty({C}), db = Tensor::empty({C});
  cpu().layernorm_backward(dx, dw, with_bias ? db : Tensor(), dy, x, w, mean, rstd);

  auto g = [&](const Tensor& t) { return gpu(t.to(dt)); };
  Tensor yg = dev_empty({N, C}, dt), mg = dev_empty({N}, dt), rg = dev_empty({N}, dt);
  cuda().layernorm_forward(yg, mg, rg, g(x), g(w), with_bias ? g(b) : Tensor(), 1e-5);
  Tensor dxg = dev_empty({N, C}, dt), dwg = dev_empty({C}, dt), dbg = dev_empty({C}, dt);
  // Backward from the CPU's mean/rstd so forward and backward are checked independently.
  cuda().layernorm_backward(dxg, dwg, with_bias ? dbg : Tensor(), g(dy), g(x), g(w), g(mean), g(rstd));
  std::string what = std::string(dtype_name(dt)) + " C=" + std::to_string(C);
  EXPECT_TRUE(nmse_le(yg, y, bound)) << what;
  EXPECT_TRUE(nmse_le(mg, mean, bound)) << what;
  EXPECT_TRUE(nmse_le(rg, rstd, bound)) << what;
  EXPECT_TRUE(nmse_le(dxg, dx, bound)) << what;
  EXPECT_TRUE(nmse_le(dwg, dw, bound)) << what;
  if (with_bias) {
    EXPECT_TRUE(nmse_le(dbg, db, bound)) << what;
  }
}

TEST(CudaNnTest, LayernormMatchesCpuVectorisedAndScalarPaths) {
  LOOM_REQUIRE_GPU();
  layernorm_case(300, 768, true, DType::F32, kNmseF32);  // 16-byte vector path
  layernorm_case(65, 33, false, DType::F32, kNmseF32);   // scalar path, no bias
  layernorm_case(130, 256, true, DType::BF16, kNmseBf16);
}

TEST(CudaNnTest, LayernormBackwardIsBitwiseDeterministic) {
  LOOM_REQUIRE_GPU();
  Tensor x = gpu(randn({1000, 128}, 1)), w = gpu(randn({128}, 2)), dy = gpu(randn({1000, 128}, 3));
  Tensor y = dev_empty({1000, 128}), mean = dev_empty({1000}), rstd = dev_empty({1000});
  cuda().layernorm_forward(y, mean, rstd, x, w, Tensor(), 1e-5);
  Tensor dw1 = dev_empty({128}), dw2 = dev_empty({128});
  cuda().layernorm_backward(Tensor(), dw1, Tensor(), dy, x, w, mean, rstd);
  cuda().layernorm_backward(Tensor(), dw2, Tensor(), dy, x, w, mean, rstd);
  EXPECT_TRUE(equal_values(dw1, dw2));
}

void attention_case(int64_t B, int64_t H, int64_t T, int64_t D, bool causal, DType dt,
                    double bound) {
  Shape s{B, H, T, D};
  Tensor q = randn(s, 7), k = randn(s, 8), v = randn(s, 9), dout = randn(s, 10);
  if (dt == DType::BF16) { q = bf16_exact(q); k = bf16_exact(k); v = bf16_exact(v); dout = bf16_exact(dout); }
  const double scale = 1.0 / std::sqrt(double(D));
  Tensor out = Tensor::empty(s), lse = Tensor::empty({B, H, T});
  cpu().attention_forward(out, lse, q, k, v, scale, causal);
  Tensor dq = Tensor::empty(s), dk = Tensor::empty(s), dv = Tensor::empty(s);
  cpu().attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale, causal);

  auto g = [&](const Tensor& t) { return gpu(t.to(dt)); };
  Tensor og = dev_empty(s, dt), lg = dev_empty({B, H, T}, dt);
  cuda().attention_forward(og, lg, g(q), g(k), g(v), scale, causal);
  Tensor dqg = dev_empty(s, dt), dkg = dev_empty(s, dt), dvg = dev_empty(s, dt);
  cuda().attention_backward(dqg, dkg, dvg, g(dout), g(q), g(k), g(v), g(out), g(lse), scale, causal);
  std::string what = std::string(dtype_name(dt)) + " T=" + std::to_string(T) + " D=" +
                     std::to_string(D) + (causal ? " causal" : "");
  EXPECT_TRUE(nmse_le(og, out, bound)) << what;
  EXPECT_TRUE(nmse_le(lg, lse, bound)) << what;
  EXPECT_TRUE(nmse_le(dqg, dq, bound)) << what;
  EXPECT_TRUE(nmse_le(dkg, dk, bound)) << what;
  EXPECT_TRUE(nmse_le(dvg, dv, bound)) << what;
}

TEST(CudaNnTest, AttentionMatchesCpu) {
  LOOM_REQUIRE_GPU();
  attention_case(2, 3, 70, 64, true, DType::F32, kNmseF32);
  attention_case(2, 3, 70, 64, false, DType::F32, kNmseF32);
  attention_case(1, 2, 129, 40, true, DType::F32, kNmseF32);
  attention_case(1, 1, 5, 128, true, DType::F32, kNmseF32);
  attention_case(2, 2, 96, 64, true, DType::BF16, kNmseBf16);
}

TEST(CudaNnTest, AttentionBackwardIsBitwiseDeterministic) {
  LOOM_REQUIRE_GPU();
  Shape s{1, 2, 100, 32};
  Tensor q = gpu(randn(s, 1)), k = gpu(randn(s, 2)), v = gpu(randn(s, 3)), dout = gpu(randn(s, 4));
  Tensor out = dev_empty(s), lse = dev_empty({1, 2, 100});
  cuda().attention_forward(out, lse, q, k, v, 0.2, true);
  Tensor dq1 = dev_empty(s), dk1 = dev_empty(s), dv1 = dev_empty(s);
  Tensor dq2 = dev_empty(s), dk2 = dev_empty(s), dv2 = dev_empty(s);
  cuda().attention_backward(dq1, dk1, dv1, dout, q, k, v, out, lse, 0.2, true);
  cuda().attention_backward(dq2, dk2, dv2, dout, q, k, v, out, lse, 0.2, true);
  EXPECT_TRUE(equal_values(dq1, dq2));
  EXPECT_TRUE(equal_values(dk1, dk2));
  EXPECT_TRUE(equal_values(dv1, dv2));
}

TEST(CudaNnTest, CrossEntropyMatchesCpuWithIgnoredRows) {
  LOOM_REQUIRE_GPU();
  const int64_t N = 37, V = 1000, ignore = -100;
  Tensor logits = randn({N, V}, 11, 0.0, 2.0), dloss = randn({N}, 12);
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[size_t(i)] = i % 5 == 0 ? ignore : (i * 131) % V;
  Tensor targets = Tensor::from_vector(t, {N});
  Tensor loss = Tensor::empty({N}), lse = Tensor::empty({N}), dl = Tensor::empty({N, V});
  cpu().cross_entropy_forward(loss, lse, logits, targets, ignore);
  cpu().cross_entropy_backward(dl, dloss, logits, targets, lse, ignore);
  Tensor lg = dev_empty({N}), lseg = dev_empty({N}), dlg = dev_empty({N, V});
  cuda().cross_entropy_forward(lg, lseg, gpu(logits), gpu(targets), ignore);
  cuda().cross_entropy_backward(dlg, gpu(dloss), gpu(logits), gpu(targets), gpu(lse), ignore);
  EXPECT_TRUE(nmse_le(lg, loss, kNmseF32));
  EXPECT_TRUE(nmse_le(lseg, lse, kNmseF32));
  EXPECT_TRUE(nmse_le(dlg, dl, kNmseF32));
  t[3] = V;  // out of range, not ignore_index
  EXPECT_THROW(cuda().cross_entropy_forward(lg, lseg, gpu(logits), gpu(Tensor::from_vector(t, {N})),
                                            ignore),
               ValueError);
}

TEST(CudaNnTest, IndexSelectGatherMatchCpuAndRangeCheck) {
  LOOM_REQUIRE_GPU();
  const int64_t outer = 3, n = 50, inner = 8, m = 20;
  Tensor x = randn({outer, n, inner}, 13);
  std::vector<int64_t> idx(m);
  for (int64_t j = 0; j < m; ++j) idx[size_t(j)] = (j * 7 + 3) % n;
  Tensor index = Tensor::from_vector(idx, {m});
  Tensor want = Tensor::empty({outer, m, inner}), got = dev_empty({outer, m, inner});
  cpu().index_select(want, x, index, outer, n, inner);
  cuda().index_select(got, gpu(x), gpu(index), outer, n, inner);
  EXPECT_TRUE(equal_values(got, want));

  std::vector<int64_t> gidx(size_t(outer * m * inner));
  for (size_t e = 0; e < gidx.size(); ++e) gidx[e] = int64_t((e * 37 + 5) % size_t(n));
  Tensor gindex = Tensor::from_vector(gidx, {outer, m, inner});
  cpu().gather(want, x, gindex, outer, n, inner);
  cuda().gather(got, gpu(x), gpu(gindex), outer, n, inner);
  EXPECT_TRUE(equal_values(got, want));

  idx[4] = n;
  EXPECT_THROW(cuda().index_select(got, gpu(x), gpu(Tensor::from_vector(idx, {m})), outer, n, inner),
               ValueError);
}

TEST(CudaNnTest, IndexAddScatterAddMatchCpuAndAreDeterministic) {
  LOOM_REQUIRE_GPU();
  const int64_t outer = 2, n = 30, inner = 16, m = 500;  // many duplicate targets
  Tensor src = randn({outer, m, inner}, 14), base = randn({outer, n, inner}, 15);
  std::vector<int64_t> idx(m);
  for (int64_t j = 0; j < m; ++j) idx[size_t(j)] = (j * j + 3 * j) % n;
  Tensor index = Tensor::from_vector(idx, {m});
  Tensor want = base.clone();
  cpu().index_add(want, src, index, outer, n, inner);
  Tensor got1 = gpu(base), got2 = gpu(base);
  cuda().index_add(got1, gpu(src), gpu(index), outer, n, inner);
  cuda().index_add(got2, gpu(src), gpu(index), outer, n, inner);
  EXPECT_TRUE(nmse_le(got1, want, kNmseF32));
  EXPECT_TRUE(equal_values(got1, got2));

  std::vector<int64_t> sidx(size_t(outer * m * inner));
  for (size_t e = 0; e < sidx.size(); ++e) sidx[e] = int64_t((e * 13 + e / 7) % size_t(n));
  Tensor sindex = Tensor::from_vector(sidx, {outer, m, inner});
  Tensor swant = base.clone();
  cpu().scatter_add(swant, src, sindex, outer, n, inner);
  Tensor sgot = gpu(base);
  cuda().scatter_add(sgot, gpu(src), gpu(sindex), outer, n, inner);
  EXPECT_TRUE(nmse_le(sgot, swant, kNmseF32));
}

TEST(CudaNnTest, AdamwStepMatchesCpuVectorAndScalarPaths) {
  LOOM_REQUIRE_GPU();
  for (int64_t n : {4096, 1001}) {
    Tensor p = randn({n}, 16), g = randn({n}, 17), m = randn({n}, 18, 0.0, 0.1);
    Tensor v = Tensor::empty({n});
    cpu().unary(UnaryOp::Square, v, randn({n}, 19, 0.0, 0.1), 0, 0);
    Tensor pg = gpu(p), gg = gpu(g), mg = gpu(m), vg = gpu(v);
    Tensor pc = p.clone(), mc = m.clone(), vc = v.clone();
    for (int step = 1; step <= 3; ++step) {
      double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.999, step);
      cpu().adamw_step(pc, g, mc, vc, 1e-3, 0.9, 0.999, 1e-8, 0.1, bc1, bc2);
      cuda().adamw_step(pg, gg, mg, vg, 1e-3, 0.9, 0.999, 1e-8, 0.1, bc1, bc2);
    }
    EXPECT_TRUE(nmse_le(pg, pc, kNmseF32)) << n;
    EXPECT_TRUE(nmse_le(mg, mc, kNmseF32)) << n;
    EXPECT_TRUE(nmse_le(vg, vc, kNmseF32)) << n;
  }
}

}  // namespace
}  // namespace loom::gputest

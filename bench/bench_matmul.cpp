// GEMM throughput: raw OpenBLAS sgemm 1024^3, then loom::matmul / loom::linear at GPT-2 small
// shapes (B*T = 4*256 tokens, C = 768): the qkv, attention-output, MLP-up and MLP-down
// projections, and the lm-head with a 50257-wide vocabulary split into a 8192-wide slice to keep
// the run short. Each reports GFLOP/s (2*M*N*K per call).
//   OMP_NUM_THREADS=2 build/bin/bench_matmul
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <vector>

#include "core/autograd/GradMode.h"
#include "core/ops/Linear.h"
#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"

namespace {

void BM_Sgemm1024(benchmark::State& state) {
  const int n = 1024;
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(),
                n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * n * n * n * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MatmulSquare(benchmark::State& state) {
  const int64_t n = state.range(0);
  loom::Generator gen(1);
  loom::Tensor a = loom::Tensor::randn({n, n}, gen), b = loom::Tensor::randn({n, n}, gen);
  loom::NoGradGuard g;
  for (auto _ : state) benchmark::DoNotOptimize(loom::matmul(a, b).raw_data());
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * double(n) * n * n * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// y (4,256,out) = linear(x (4,256,in), w (out,in), b) forward [+ backward when range(2)].
void BM_LinearGpt2(benchmark::State& state) {
  const int64_t in = state.range(0), out = state.range(1), rows = 4 * 256;
  const bool backward = state.range(2) != 0;
  loom::Generator gen(1);
  loom::Tensor x = loom::Tensor::randn({4, 256, in}, gen).set_requires_grad(backward);
  loom::Tensor w = loom::Tensor::randn({out, in}, gen).set_requires_grad(backward);
  loom::Tensor b = loom::Tensor::randn({out}, gen).set_requires_grad(backward);
  loom::Tensor dy = loom::Tensor::randn({4, 256, out}, gen);
  for (auto _ : state) {
    loom::Tensor y = loom::linear(x, w, b);
    if (backward) {
      y.backward(dy);
      x.set_grad(loom::Tensor());
      w.set_grad(loom::Tensor());
      b.set_grad(loom::Tensor());
    }
    benchmark::DoNotOptimize(y.raw_data());
  }
  const double flops = 2.0 * double(rows) * in * out * (backward ? 3.0 : 1.0);
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_Sgemm1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MatmulSquare)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LinearGpt2)
    ->ArgNames({"in", "out", "bwd"})
    ->Args({768, 2304, 0})->Args({768, 768, 0})->Args({768, 3072, 0})->Args({3072, 768, 0})
    ->Args({768, 8192, 0})
    ->Args({768, 2304, 1})->Args({3072, 768, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();

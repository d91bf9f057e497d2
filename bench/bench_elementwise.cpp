// Throughput of the CPU elementwise and reduction kernels in GB/s (bytes read + written):
// bias add (B*T, C) + (C) broadcast, GELU forward and backward, and sum over the last dim.
//   build/bin/bench_elementwise --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "core/backend/cpu/CpuBackend.h"
#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"

namespace {

using loom::Tensor;

Tensor randn(const loom::Shape& s, uint64_t seed) {
  loom::Generator gen(seed);
  return Tensor::randn(s, gen);
}

// rows x 768 activations (GPT-2 small width); rows = B*T.
void BM_AddBias(benchmark::State& state) {
  const int64_t rows = state.range(0), c = 768;
  Tensor x = randn({rows, c}, 1), b = randn({c}, 2), y = Tensor::empty({rows, c});
  auto& be = loom::cpu::the_cpu_backend();
  for (auto _ : state) be.binary(loom::BinaryOp::Add, y, x, b.expand({rows, c}));
  state.SetBytesProcessed(state.iterations() * (2 * rows * c + c) * 4);
}

void BM_GeluForward(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor x = randn({n}, 3), y = Tensor::empty({n});
  auto& be = loom::cpu::the_cpu_backend();
  for (auto _ : state) be.unary(loom::UnaryOp::Gelu, y, x, 0, 0);
  state.SetBytesProcessed(state.iterations() * 2 * n * 4);
}

void BM_GeluBackward(benchmark::State& state) {
  const int64_t n = state.range(0);
  Tensor x = randn({n}, 4), dy = randn({n}, 5), dx = Tensor::empty({n});
  auto& be = loom::cpu::the_cpu_backend();
  for (auto _ : state) be.binary(loom::BinaryOp::GeluBackward, dx, dy, x);
  state.SetBytesProcessed(state.iterations() * 3 * n * 4);
}

void BM_SumLastDim(benchmark::State& state) {
  const int64_t rows = state.range(0), c = state.range(1);
  Tensor x = randn({rows, c}, 6), y = Tensor::empty({rows});
  auto& be = loom::cpu::the_cpu_backend();
  for (auto _ : state) be.reduce(loom::ReduceOp::Sum, y, Tensor(), x, rows, c, 1);
  state.SetBytesProcessed(state.iterations() * rows * c * 4);
}

void BM_SumFirstDim(benchmark::State& state) {  // bias gradient: (B*T, C) -> (C)
  const int64_t rows = state.range(0), c = 768;
  Tensor x = randn({rows, c}, 7), y = Tensor::empty({c});
  auto& be = loom::cpu::the_cpu_backend();
  for (auto _ : state) be.reduce(loom::ReduceOp::Sum, y, Tensor(), x, 1, rows, c);
  state.SetBytesProcessed(state.iterations() * rows * c * 4);
}

BENCHMARK(BM_AddBias)->Arg(64)->Arg(4096)->UseRealTime();
BENCHMARK(BM_GeluForward)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_GeluBackward)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();
BENCHMARK(BM_SumLastDim)->Args({1, 1 << 22})->Args({4096, 768})->UseRealTime();
BENCHMARK(BM_SumFirstDim)->Arg(4096)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

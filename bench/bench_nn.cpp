// Throughput of the fused CPU nn kernels at GPT-2 small shapes: layer norm forward/backward
// (N = 4*1024 tokens, C = 768), softmax over attention rows (4*12*256 rows of 256), cross entropy
// forward+backward (N = 256, V = 50257) and the AdamW step (16M params). Bytes processed count
// each tensor read or written once, so GB/s compares directly with memory bandwidth.
//   build-c/bin/bench_nn --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "core/backend/Backend.h"
#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"

namespace loom {
namespace {

Backend& cpu() { return backend_for(DeviceType::CPU); }

void BM_LayerNormForward(benchmark::State& state) {
  const int64_t N = 4 * 1024, C = 768;
  Generator gen(1);
  Tensor x = Tensor::randn({N, C}, gen), w = Tensor::randn({C}, gen), b = Tensor::randn({C}, gen);
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  for (auto _ : state) cpu().layernorm_forward(y, mean, rstd, x, w, b, 1e-5);
  state.SetBytesProcessed(state.iterations() * 2 * N * C * 4);  // read x, write y
}
BENCHMARK(BM_LayerNormForward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_LayerNormBackward(benchmark::State& state) {
  const int64_t N = 4 * 1024, C = 768;
  Generator gen(2);
  Tensor x = Tensor::randn({N, C}, gen), w = Tensor::randn({C}, gen), b = Tensor::randn({C}, gen);
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  cpu().layernorm_forward(y, mean, rstd, x, w, b, 1e-5);
  Tensor dy = Tensor::randn({N, C}, gen), dx = Tensor::empty({N, C});
  Tensor dw = Tensor::empty({C}), db = Tensor::empty({C});
  for (auto _ : state) cpu().layernorm_backward(dx, dw, db, dy, x, w, mean, rstd);
  state.SetBytesProcessed(state.iterations() * 3 * N * C * 4);  // read dy and x, write dx
}
BENCHMARK(BM_LayerNormBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_SoftmaxForward(benchmark::State& state) {
  const int64_t rows = 4 * 12 * 256, cols = 256;
  Generator gen(3);
  Tensor x = Tensor::randn({rows, cols}, gen), y = Tensor::empty({rows, cols});
  for (auto _ : state) cpu().softmax_forward(y, x, false);
  state.SetBytesProcessed(state.iterations() * 2 * rows * cols * 4);  // read x, write y
}
BENCHMARK(BM_SoftmaxForward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_SoftmaxBackward(benchmark::State& state) {
  const int64_t rows = 4 * 12 * 256, cols = 256;
  Generator gen(4);
  Tensor x = Tensor::randn({rows, cols}, gen), y = Tensor::empty({rows, cols});
  cpu().softmax_forward(y, x, false);
  Tensor dy = Tensor::randn({rows, cols}, gen), dx = Tensor::empty({rows, cols});
  for (auto _ : state) cpu().softmax_backward(dx, dy, y, false);
  state.SetBytesProcessed(state.iterations() * 3 * rows * cols * 4);  // read dy and y, write dx
}
BENCHMARK(BM_SoftmaxBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_CrossEntropyForwardBackward(benchmark::State& state) {
  const int64_t N = 256, V = 50257;
  Generator gen(5);
  Tensor logits = Tensor::randn({N, V}, gen, DType::F32, Device::cpu(), 0.0, 3.0);
  std::vector<int64_t> t(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) t[size_t(i)] = (i * 7919) % V;
  Tensor targets = Tensor::from_vector(t, {N});
  Tensor loss = Tensor::empty({N}), lse = Tensor::empty({N}), dloss = Tensor::full({N}, 1.0 / N);
  Tensor dlogits = Tensor::empty({N, V});
  for (auto _ : state) {
    cpu().cross_entropy_forward(loss, lse, logits, targets, -100);
    cpu().cross_entropy_backward(dlogits, dloss, logits, targets, lse, -100);
  }
  // forward reads logits; backward reads logits and writes dlogits
  state.SetBytesProcessed(state.iterations() * 3 * N * V * 4);
}
BENCHMARK(BM_CrossEntropyForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_AdamWStep(benchmark::State& state) {
  const int64_t n = 16 * 1024 * 1024;
  Generator gen(6);
  Tensor p = Tensor::randn({n}, gen), g = Tensor::randn({n}, gen);
  Tensor m = Tensor::zeros({n}), v = Tensor::zeros({n});
  for (auto _ : state) cpu().adamw_step(p, g, m, v, 1e-4, 0.9, 0.95, 1e-8, 0.1, 0.1, 0.05);
  state.SetBytesProcessed(state.iterations() * 7 * n * 4);  // read p,g,m,v; write p,m,v
}
BENCHMARK(BM_AdamWStep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace loom

BENCHMARK_MAIN();

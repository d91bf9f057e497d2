// Fused CPU attention vs OpenBLAS sgemm in one run (the acceptance ratio of the attention issue):
// fp32 causal attention forward+backward at B=4, H=12, T=256, D=64, counted as 12*B*H*T^2*D FLOPs
// (the dense count, although causal work is about half of it), against a 1024^3 sgemm (2*N^3).
// Prints Google Benchmark counters (ratio from their medians), then one JSON line that also holds
// the ratio from 30 interleaved rounds, best time of each side (robust on a shared machine):
//   {"sgemm_gflops": ..., "attention_gflops": ..., "ratio": ..., "best_of_30_interleaved": {...}}
//   OMP_NUM_THREADS=2 build/bin/bench_attention
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <cstdio>
#include <vector>

#include "core/backend/cpu/CpuBackend.h"
#include "core/random/Generator.h"
#include "core/tensor/Tensor.h"

namespace {

constexpr int64_t kB = 4, kH = 12, kT = 256, kD = 64, kN = 1024;
double g_sgemm_gflops = 0, g_attn_gflops = 0;

void BM_Sgemm1024(benchmark::State& state) {
  std::vector<float> a(size_t(kN * kN), 0.5f), b(size_t(kN * kN), 0.25f), c(size_t(kN * kN));
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(kN), int(kN), int(kN), 1.0f,
                a.data(), int(kN), b.data(), int(kN), 0.0f, c.data(), int(kN));
    benchmark::DoNotOptimize(c.data());
  }
  const double flops = 2.0 * double(kN) * kN * kN;
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_AttentionFwdBwd(benchmark::State& state) {
  const bool causal = state.range(0) != 0;
  loom::Generator gen(1);
  const loom::Shape s{kB, kH, kT, kD};
  loom::Tensor q = loom::Tensor::randn(s, gen), k = loom::Tensor::randn(s, gen);
  loom::Tensor v = loom::Tensor::randn(s, gen), dout = loom::Tensor::randn(s, gen);
  loom::Tensor out = loom::Tensor::empty(s), lse = loom::Tensor::empty({kB, kH, kT});
  loom::Tensor dq = loom::Tensor::empty(s), dk = loom::Tensor::empty(s);
  loom::Tensor dv = loom::Tensor::empty(s);
  auto& be = loom::cpu::the_cpu_backend();
  const double scale = 0.125;
  for (auto _ : state) {
    be.attention_forward(out, lse, q, k, v, scale, causal);
    be.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale, causal);
    benchmark::DoNotOptimize(dq.raw_data());
  }
  const double flops = 12.0 * kB * kH * double(kT) * kT * kD;
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_AttentionFwd(benchmark::State& state) {
  loom::Generator gen(1);
  const loom::Shape s{kB, kH, kT, kD};
  loom::Tensor q = loom::Tensor::randn(s, gen), k = loom::Tensor::randn(s, gen);
  loom::Tensor v = loom::Tensor::randn(s, gen);
  loom::Tensor out = loom::Tensor::empty(s), lse = loom::Tensor::empty({kB, kH, kT});
  auto& be = loom::cpu::the_cpu_backend();
  for (auto _ : state) {
    be.attention_forward(out, lse, q, k, v, 0.125, true);
    benchmark::DoNotOptimize(out.raw_data());
  }
  const double flops = 4.0 * kB * kH * double(kT) * kT * kD;
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Keeps the median GFLOP/s over the repetitions of each benchmark for the summary line (this
// machine is shared, so single runs are noisy).
class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      auto it = r.counters.find("GFLOPs");
      if (it == r.counters.end() || r.run_type != Run::RT_Aggregate ||
          r.aggregate_name != "median") {
        continue;
      }
      const std::string name = r.benchmark_name();
      if (name.rfind("BM_Sgemm1024", 0) == 0) g_sgemm_gflops = it->second;
      if (name.rfind("BM_AttentionFwdBwd/1", 0) == 0) g_attn_gflops = it->second;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

BENCHMARK(BM_Sgemm1024)->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(5);
BENCHMARK(BM_AttentionFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(5);
BENCHMARK(BM_AttentionFwd)->Unit(benchmark::kMillisecond)->UseRealTime();

// Interleaves sgemm and causal attention fwd+bwd calls and keeps the best time of each, so that
// load from other processes on a shared machine hits both sides alike. Returns {sgemm, attention}
// GFLOP/s.
std::pair<double, double> interleaved_best(int rounds) {
  std::vector<float> a(size_t(kN * kN), 0.5f), b(size_t(kN * kN), 0.25f), c(size_t(kN * kN));
  loom::Generator gen(1);
  const loom::Shape s{kB, kH, kT, kD};
  loom::Tensor q = loom::Tensor::randn(s, gen), k = loom::Tensor::randn(s, gen);
  loom::Tensor v = loom::Tensor::randn(s, gen), dout = loom::Tensor::randn(s, gen);
  loom::Tensor out = loom::Tensor::empty(s), lse = loom::Tensor::empty({kB, kH, kT});
  loom::Tensor dq = loom::Tensor::empty(s), dk = loom::Tensor::empty(s), dv = loom::Tensor::empty(s);
  auto& be = loom::cpu::the_cpu_backend();
  using Clock = std::chrono::steady_clock;
  double best_g = 1e30, best_a = 1e30;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(kN), int(kN), int(kN), 1.0f,
                a.data(), int(kN), b.data(), int(kN), 0.0f, c.data(), int(kN));
    auto t1 = Clock::now();
    be.attention_forward(out, lse, q, k, v, 0.125, true);
    be.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, 0.125, true);
    auto t2 = Clock::now();
    best_g = std::min(best_g, std::chrono::duration<double>(t1 - t0).count());
    best_a = std::min(best_a, std::chrono::duration<double>(t2 - t1).count());
  }
  return {2.0 * double(kN) * kN * kN / best_g * 1e-9,
          12.0 * kB * kH * double(kT) * kT * kD / best_a * 1e-9};
}

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  auto [best_sgemm, best_attn] = interleaved_best(30);
  std::printf("{\"threads\": %d, \"sgemm_gflops\": %.2f, \"attention_gflops\": %.2f, "
              "\"ratio\": %.3f, \"best_of_30_interleaved\": {\"sgemm_gflops\": %.2f, "
              "\"attention_gflops\": %.2f, \"ratio\": %.3f}}\n",
              loom::cpu::num_threads(), g_sgemm_gflops, g_attn_gflops,
              g_sgemm_gflops > 0 ? g_attn_gflops / g_sgemm_gflops : 0.0, best_sgemm, best_attn,
              best_attn / best_sgemm);
  return 0;
}

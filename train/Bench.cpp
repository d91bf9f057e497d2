// run_train_bench: a GPT training step timed end to end on fixed-seed random tokens. Each timed
// step reads the loss back (loss.item()), which also synchronises a CUDA device, so the clock
// covers all the step's work; PyTorch's twin (bench/pytorch_train_gpt2.py) does the same.
#include "train/Bench.h"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/autograd/Autocast.h"
#include "core/backend/Backend.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/util/Check.h"
#include "core/util/Memory.h"
#include "models/GPT.h"
#include "optim/AdamW.h"
#include "optim/ClipGradNorm.h"

namespace loom::train {

namespace {

// The Llama architecture on a GPT-2 shape: RMSNorm, rotary embeddings, SwiGLU of width 8/3 C
// (the same MLP parameters as GELU's 4 C), no biases, tied head.
models::GPTConfig llama_shaped(models::GPTConfig c, int64_t intermediate_size) {
  c.norm = models::NormKind::RMSNorm;
  c.position = models::PositionKind::Rope;
  c.mlp = models::MlpKind::SwiGLU;
  c.intermediate_size = intermediate_size;
  c.bias = false;
  return c;
}

models::GPTConfig bench_config(const std::string& name) {
  if (name == "llama-124m") return llama_shaped(models::GPTConfig::preset("gpt2-124m"), 2048);
  if (name != "tiny" && name != "tiny-llama") return models::GPTConfig::preset(name);
  models::GPTConfig c;
  c.n_layer = 4;
  c.n_head = 4;
  c.n_embd = 64;
  c.vocab_size = 256;
  c.block_size = 32;
  if (name == "tiny") return c;
  c = llama_shaped(c, 176);
  c.n_kv_head = 2;  // grouped-query attention
  return c;
}

}  // namespace

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

void check_bench_options(const BenchOptions& o) {
  const models::GPTConfig c = bench_config(o.model);
  LOOM_CHECK(o.batch >= 1 && o.seq >= 1, "bench: expected batch >= 1 and seq >= 1, got batch ",
             o.batch, " and seq ", o.seq);
  LOOM_CHECK(o.seq <= c.block_size, "bench: expected seq <= block_size ", c.block_size,
             " of model '", o.model, "', got ", o.seq);
  LOOM_CHECK(o.steps >= 1 && o.warmup >= 0, "bench: expected steps >= 1 and warmup >= 0, got ",
             o.steps, " and ", o.warmup);
  const int cores = usable_cores();
  LOOM_CHECK(o.threads >= 0 && o.threads <= cores, "bench: expected threads in [0, ", cores,
             "] (0 = default; ", cores, " = the cores this process may use), got ", o.threads);
  LOOM_CHECK(o.dtype == "f32" || o.dtype == "bf16", "bench: expected dtype f32 or bf16, got '",
             o.dtype, "'");
  LOOM_CHECK(o.dtype == "f32" || !o.device.is_cpu(), "bench: expected dtype f32 on the CPU (its ",
             "kernels are f32; bf16 autocast runs on CUDA only), got '", o.dtype, "'");
}

namespace {

// One (ids, targets) pair of shape (B,T) per step: uniform tokens from a fixed-seed engine,
// targets = ids shifted by one (like a next-token batch).
std::vector<std::pair<Tensor, Tensor>> make_batches(int64_t n, int64_t B, int64_t T, int64_t V,
                                                    Device device) {
  std::mt19937_64 rng(1337);
  std::uniform_int_distribution<int64_t> tok(0, V - 1);
  std::vector<std::pair<Tensor, Tensor>> out;
  for (int64_t s = 0; s < n; ++s) {
    std::vector<int64_t> seq(size_t(B * (T + 1)));
    for (auto& t : seq) t = tok(rng);
    std::vector<int64_t> ids, tgt;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        ids.push_back(seq[size_t(b * (T + 1) + t)]);
        tgt.push_back(seq[size_t(b * (T + 1) + t + 1)]);
      }
    out.emplace_back(Tensor::from_vector(ids, {B, T}).to(device),
                     Tensor::from_vector(tgt, {B, T}).to(device));
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

std::string run_train_bench(const BenchOptions& o) {
  check_bench_options(o);
  const models::GPTConfig config = bench_config(o.model);
  if (o.threads > 0) cpu::set_num_threads(o.threads);
  if (o.device.is_cpu() && !o.blas.empty()) cpu::set_blas_kernels(o.blas);
  Backend& backend = backend_for(o.device);

  models::GPT model(config, {}, DType::F32, o.device);
  model.init_weights(1337);
  model.train();
  const auto named = model.named_parameters();
  const std::vector<Tensor> params = model.parameters();
  optim::AdamW opt(named, {.lr = 6e-4, .beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1});
  const auto batches = make_batches(o.warmup + o.steps, o.batch, o.seq, config.vocab_size,
                                    o.device);
  backend.synchronize(o.device.index);
  backend.reset_peak(o.device.index);

  std::vector<double> ms;
  double loss_value = 0.0;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    Tensor loss;
    {
      AutocastGuard autocast(o.dtype == "bf16" ? DType::BF16 : DType::F32);
      loss = model.loss(batches[size_t(s)].first, batches[size_t(s)].second);
    }
    loss.backward();
    optim::clip_grad_norm(params, 1.0);
    opt.step();
    opt.zero_grad();
    loss_value = loss.item();
    backend.synchronize(o.device.index);
    const auto t1 = std::chrono::steady_clock::now();
    if (s >= o.warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }

  const double med = median(ms);
  nlohmann::json j;
  j["impl"] = "loom";
  j["model"] = o.model;
  j["params"] = model.num_parameters();
  j["batch"] = o.batch;
  j["seq"] = o.seq;
  j["threads"] = o.device.is_cpu() ? cpu::num_threads() : 0;
  j["device"] = o.device.str();
  j["dtype"] = o.dtype;
  if (o.device.is_cpu()) j["blas"] = cpu::blas_kernels_name();
  j["steps"] = o.steps;
  j["warmup"] = o.warmup;
  j["ms_per_step_median"] = med;
  j["ms_per_step_min"] = *std::min_element(ms.begin(), ms.end());
  j["ms_per_step_max"] = *std::max_element(ms.begin(), ms.end());
  j["tokens_per_s"] = double(o.batch * o.seq) / (med / 1000.0);
  j["final_loss"] = loss_value;
  j["peak_rss_mb"] = peak_rss_mb();
  // Live tensor bytes at their peak (host memory on the CPU, device memory on a GPU).
  j[o.device.is_cpu() ? "peak_tensor_mb" : "peak_device_mb"] =
      double(backend.peak_allocated_bytes(o.device.index)) / (1 << 20);
  return j.dump();
}

}  // namespace loom::train

// `loom bench`: times full training steps (forward, backward, clipping, AdamW) and prints one JSON
// line (train/Bench.h). bench/compare_pytorch.sh runs it next to the PyTorch twin.
//   loom bench --model gpt2-124m --batch 4 --seq 64 --steps 10 --threads 2
#include <cstdio>

#include "core/util/Check.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "train/Bench.h"

namespace loom::cli {

namespace {

// A sanity bound for the sizes and step counts (far above any run that fits in memory).
constexpr int64_t kMaxCount = 1 << 24;

int run_bench(const Verb& a) {
  train::BenchOptions o;
  o.model = a.get("model", o.model);
  o.batch = a.get_int("batch", o.batch, 1, kMaxCount);
  o.seq = a.get_int("seq", o.seq, 1, kMaxCount);
  o.steps = a.get_int("steps", o.steps, 1, kMaxCount);
  o.warmup = a.get_int("warmup", o.warmup, 0, kMaxCount);
  o.threads = int(a.get_int("threads", 0, 1, train::usable_cores()));
  o.blas = a.get("blas", "");
  o.dtype = a.get("dtype", o.dtype);
  try {
    o.device = Device::parse(a.get("device", "cpu"));
    train::check_bench_options(o);
  } catch (const ValueError& e) {
    throw ConfigError(std::string("loom ") + e.what());  // a bad flag value: exit code 2
  }
  std::printf("%s\n", train::run_train_bench(o).c_str());
  return 0;
}

}  // namespace

void add_bench(Cli& cli) {
  cli.verb(cli.root(), "bench", "time training steps and print one JSON line", run_bench)
      .value("model", "NAME",
             "gpt2-124m (default), gpt2-350m, gpt2-774m, gpt2-1.5b, llama-3.2-1b, llama-3.2-3b, "
             "llama-3.1-8b, qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b, mistral-7b, llama-124m (GPT-2 "
             "124M's shape, Llama architecture), tiny or tiny-llama")
      .value("batch", "B", "sequences per step (default 4)")
      .value("seq", "T", "tokens per sequence (default 64)")
      .value("steps", "N", "timed steps (default 10)")
      .value("warmup", "N", "untimed steps first (default 2)")
      .value("threads", "N", "CPU threads, at most the cores this process may use (default: all)")
      .value("device", "DEV", "cpu (default), cuda or cuda:N")
      .value("blas", "NAME", "OpenBLAS kernel set: auto or a name such as Haswell (CPU)")
      .value("dtype", "DT", "f32 (default) or bf16 (autocast; CUDA only, the CPU kernels are f32)");
}

}  // namespace loom::cli

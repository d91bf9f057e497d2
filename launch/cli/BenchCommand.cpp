// `loom bench`: times full training steps (forward, backward, clipping, AdamW) and prints one JSON
// line (train/Bench.h). bench/compare_pytorch.sh runs it next to the PyTorch twin.
//   loom bench --model gpt2-124m --batch 4 --seq 64 --steps 10 --threads 2
#include <cstdio>

#include "core/util/Check.h"
#include "launch/cli/Args.h"
#include "launch/cli/Commands.h"
#include "train/Bench.h"

namespace loom::cli {

int cmd_bench(int argc, char** argv) {
  Args a("bench", argc, argv, 2,
         {{"model", Kind::Value, "gpt2-124m (default), gpt2-350m, gpt2-774m, gpt2-1.5b or tiny"},
          {"batch", Kind::Value, "sequences per step (default 4)"},
          {"seq", Kind::Value, "tokens per sequence (default 64)"},
          {"steps", Kind::Value, "timed steps (default 10)"},
          {"warmup", Kind::Value, "untimed steps first (default 2)"},
          {"threads", Kind::Value, "CPU threads (default: all cores)"},
          {"device", Kind::Value, "cpu (default) or cuda[:N]"},
          {"blas", Kind::Value, "OpenBLAS kernel set: auto or a name such as Haswell (CPU)"},
          {"dtype", Kind::Value, "f32 (default) or bf16 (autocast, CUDA)"}});
  LOOM_CHECK_T(ConfigError, a.positional().empty(), "loom bench: unexpected argument \"",
               a.positional().empty() ? "" : a.positional()[0], "\"\n", a.usage());
  train::BenchOptions o;
  o.model = a.get("model", o.model);
  o.batch = a.get_int("batch", o.batch);
  o.seq = a.get_int("seq", o.seq);
  o.steps = a.get_int("steps", o.steps);
  o.warmup = a.get_int("warmup", o.warmup);
  o.threads = int(a.get_int("threads", 0));
  o.device = Device::parse(a.get("device", "cpu"));
  o.blas = a.get("blas", "");
  o.dtype = a.get("dtype", o.dtype);
  std::printf("%s\n", train::run_train_bench(o).c_str());
  return 0;
}

}  // namespace loom::cli

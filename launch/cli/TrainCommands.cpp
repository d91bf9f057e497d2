// `loom train` and `loom plan`: resolve the config (file + --set overrides + defaults +
// validation, all before any work), then train or print the resolved plan. Started by mpirun or
// srun (see parallel/data/DistributedRuntime.h), `loom train` initialises MPI and trains data
// parallel over all ranks; a rank that fails prints its error and aborts the whole job.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "launch/cli/ErrorReport.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigLoader.h"
#include "io/HfSource.h"
#include "models/GPTConfig.h"
#include "parallel/comm/MpiCommunicator.h"
#include "parallel/data/DistributedRuntime.h"
#include "rlhf/Stages.h"
#include "core/util/StopSignal.h"
#include "train/MemoryPlan.h"
#include "launch/cli/ModelSource.h"
#include "train/Trainer.h"

namespace loom::cli {

namespace {

// The largest --world `loom plan` accepts (a sanity bound, far above any real job).
constexpr int64_t kMaxWorld = 1 << 20;

config::RunConfig resolve_from(const Verb& a, const std::string& verb, int world) {
  LOOM_CHECK_T(ConfigError, a.positional().size() == 1, "loom ", verb,
               ": expected exactly one CONFIG file (.pbtxt or .json), got ", a.positional().size(),
               " positional arguments; see `loom ", verb, " --help`");
  std::vector<std::string> sets = a.list("set");
  if (verb == "train" && a.has("resume"))  // `loom plan` has no --resume
    sets.push_back("checkpoint.resume=" + a.get("resume", ""));
  return config::resolve(a.positional()[0], sets, world, io::model_from_init);
}

// One training run; `world` is null for a single process. Prints only on the writing rank.
int train_with(const Verb& a, std::shared_ptr<Communicator> world) {
  config::RunConfig cfg = resolve_from(a, "train", world ? world->size() : 1);
  resolve_checkpoint_roots(cfg);
  train::Trainer trainer(cfg, world, rlhf::make_stage);
  const bool out = trainer.is_writer();
  if (out)
    std::printf("loom train: %s, %lld parameters, %lld steps, %d rank(s), output %s\n",
                cfg.name().c_str(), (long long)trainer.num_parameters(),
                (long long)cfg.max_steps(), world ? world->size() : 1, cfg.output_dir().c_str());
  train::TrainSummary s = trainer.run();
  if (s.stop_signal != 0) {
    if (out)
      std::printf("loom train: stopped by %s after step %lld; checkpoint %s (continue with "
                  "--resume auto)\n",
                  stop_signal_name(s.stop_signal), (long long)s.last_step,
                  s.last_checkpoint.c_str());
    return kExitStopped;
  }
  if (!out) return 0;
  if (!s.losses.empty())
    std::printf("loom train: steps %lld-%lld, final loss %.4f", (long long)s.first_step,
                (long long)s.last_step, s.losses.back());
  else
    std::printf("loom train: nothing to do (already at step %lld)", (long long)s.last_step);
  if (!std::isnan(s.last_val_loss))
    std::printf(", val loss %.4f -> %.4f", s.first_val_loss, s.last_val_loss);
  std::printf("\nloom train: checkpoint %s\n", s.last_checkpoint.c_str());
  double max_rss = 0.0, sum_rss = 0.0;
  for (double mb : s.peak_rss_mb) {
    max_rss = std::max(max_rss, mb);
    sum_rss += mb;
  }
  std::printf("loom train: peak RSS %.0f MiB on the largest rank, %.0f MiB over %zu rank(s)\n",
              max_rss, sum_rss, s.peak_rss_mb.size());
  double max_tensor = 0.0;
  for (double mb : s.peak_tensor_mb) max_tensor = std::max(max_tensor, mb);
  std::printf("loom train: peak tensor memory %.0f MiB on the largest rank\n", max_tensor);
  return 0;
}

int run_train(const Verb& a) {
  if (a.has("blas")) set_blas_kernels_option(a.get("blas", ""));
  install_stop_handlers();
  return run_with_launcher_world([&](std::shared_ptr<Communicator> world) {
    return train_with(a, std::move(world));
  });
}

int run_plan(const Verb& a) {
  const int world = int(a.get_int("world", 1, 1, kMaxWorld));
  config::RunConfig cfg = resolve_from(a, "plan", world);
  models::GPTConfig g = train::gpt_config_from(cfg);
  std::printf("%s", config::to_text(cfg).c_str());
  std::printf("# parameters: %lld\n# gradient accumulation: %lld\n# padded vocab: %lld\n",
              (long long)g.num_parameters(), (long long)config::grad_accum_steps(cfg),
              (long long)config::padded_vocab_size(cfg));
  const int tp = int(cfg.parallel().tp()), pp = int(cfg.parallel().pp());
  std::printf("# layout: tp=%d pp=%d dp=%lld, %lld micro-batch(es) per step\n", tp, pp,
              (long long)cfg.parallel().dp(), (long long)config::grad_accum_steps(cfg));
  for (int s = 0; s < pp; ++s) {
    const auto [begin, end] = models::stage_layers(g.n_layer, pp, s);
    std::printf("# stage %d: blocks [%lld, %lld), %lld parameters per rank\n", s, (long long)begin,
                (long long)end, (long long)models::GPT::local_parameters(g, tp, s, pp));
  }
  std::printf("# memory per rank (estimate; %s):\n",
              cfg.device() == config::RunConfig::CUDA ? "device memory of the tensors, the CUDA "
                                                        "context not included"
                                                      : "resident set size");
  double peak = 0.0;
  for (const train::RankMemory& r : train::plan_memory(cfg)) {
    std::printf("#   %s\n", r.str().c_str());
    peak = std::max(peak, r.peak);
  }
  std::printf("# peak per rank: max %.0f MiB\n", peak);
  return 0;
}

}  // namespace

void add_train(Cli& cli) {
  cli.verb(cli.root(), "train", "train from a config file", run_train)
      .positionals("CONFIG", "the run config (.pbtxt or .json; see config/Config.proto)")
      .list("set", "FIELD=VALUE", "override a config field, e.g. --set optimizer.lr=3e-4")
      .value("resume", "R", "auto (newest complete checkpoint), none, or a checkpoint dir")
      .value("blas", "NAME", "OpenBLAS kernel set: auto (detect the CPU, overriding "
                             "OPENBLAS_CORETYPE) or a name such as Haswell");
}

void add_plan(Cli& cli) {
  cli.verb(cli.root(), "plan", "print the resolved config, parallel layout and memory estimate",
           run_plan)
      .positionals("CONFIG", "the run config (.pbtxt or .json)")
      .list("set", "FIELD=VALUE", "override a config field")
      .value("world", "N", "number of processes (default 1)");
}

int run_with_launcher_world(const std::function<int(std::shared_ptr<Communicator>)>& body) {
  if (!dist::started_by_launcher()) return body(nullptr);
  dist::MpiSession mpi;
  try {
    // Scoped so that the communicators are gone before MPI_Finalize.
    return body(mpi.world_size() > 1 ? MpiCommunicator::world() : nullptr);
  } catch (...) {
    if (mpi.world_size() == 1) throw;
    const ErrorReport r = report_current_exception();
    std::fprintf(stderr, "loom: error: [rank %d of %d] %s\n", mpi.world_rank(), mpi.world_size(),
                 r.message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    dist::abort_job(r.exit_code);  // ends every rank, so none waits for this one
  }
}

}  // namespace loom::cli

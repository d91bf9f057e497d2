// Per-step metrics: one JSON object per line in <output_dir>/metrics.jsonl (machine-readable, read
// by tests and plotting scripts), optionally mirrored as TensorBoard scalars, plus the console
// progress display (a live bar on a terminal, plain lines otherwise).
//   MetricsLogger log(out_dir, /*tensorboard=*/true);
//   log.write({{"step", 10}, {"loss", 3.2}, {"lr", 6e-4}});
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace loom::train {

class TensorBoardWriter;

// Ordered (name, value) pairs; "step" is required in every record.
using MetricRecord = std::vector<std::pair<std::string, double>>;

class MetricsLogger {
 public:
  // Appends to <dir>/metrics.jsonl (append keeps a resumed run's history); TensorBoard events go to
  // <dir>/tensorboard/ when enabled.
  MetricsLogger(const std::string& dir, bool tensorboard);
  ~MetricsLogger();
  void write(const MetricRecord& record, const std::string& tb_prefix = "train/");

 private:
  std::FILE* f_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tb_;
};

// Console progress: "step 120/2000 [#####.....] loss 3.214 lr 6.0e-04 12.3k tok/s ETA 3m12s".
// On a terminal the line redraws in place; otherwise every `plain_every`-th call prints a line.
class ProgressDisplay {
 public:
  ProgressDisplay(int64_t total_steps, bool force_plain, int64_t plain_every);
  void update(int64_t step, double loss, double lr, double tokens_per_s);
  void message(const std::string& line);  // a line that must not be overwritten (eval, ckpt)
  void finish();

 private:
  int64_t total_;
  bool tty_;
  int64_t plain_every_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point start_;
  int64_t start_step_ = -1;
};

std::string format_duration(double seconds);  // "1h02m", "3m12s", "45s"

}  // namespace loom::train

// Per-step metrics: one JSON object per line in <output_dir>/metrics.jsonl (machine-readable, read
// by tests and plotting scripts), optionally mirrored as TensorBoard scalars, plus the console
// progress display (a live bar on a terminal, plain lines otherwise). A record that cannot be
// written (disk full, I/O error) is an IoError naming the file and the system's reason: metrics
// are never lost silently.
//   MetricsLogger log(out_dir, /*tensorboard=*/true);
//   log.truncate_after(resumed_step);   // a resumed run replays steps: drop their old records
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
  // IoError naming the file when it cannot be opened.
  MetricsLogger(const std::string& dir, bool tensorboard);
  ~MetricsLogger();
  MetricsLogger(const MetricsLogger&) = delete;
  MetricsLogger& operator=(const MetricsLogger&) = delete;
  // Appends the record and flushes it (and the TensorBoard scalars); IoError on any failure.
  void write(const MetricRecord& record, const std::string& tb_prefix = "train/");
  // Removes every record with "step" > step from metrics.jsonl (and a torn last line) and every
  // event with step > step from the TensorBoard event files, atomically per file: a run resumed
  // from an older checkpoint replays those steps and must not log them twice.
  void truncate_after(int64_t step);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
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

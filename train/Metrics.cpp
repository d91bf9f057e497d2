// JSONL metrics, TensorBoard mirroring, and the console progress display (see Metrics.h).
#include "train/Metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/util/Check.h"
#include "core/util/Logging.h"
#include "train/TensorBoard.h"

namespace loom::train {

namespace {
std::string json_number(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";  // JSON has no NaN/Inf
  if (v == std::floor(v) && std::abs(v) < 1e15) return std::to_string(int64_t(v));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);  // exact: resume tests compare text
  return buf;
}
}  // namespace

namespace {

[[noreturn]] void io_fail(const std::string& what, const std::string& path, int err) {
  throw IoError("metrics: cannot " + what + " " + path + ": " + std::strerror(err));
}

std::FILE* open_append(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "ab");
  if (!f) io_fail("open", path, errno);
  return f;
}

// The "step" of one metrics.jsonl line, or nullopt for a line that is not a complete record.
std::optional<double> line_step(const std::string& line) {
  try {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.is_object() && j.contains("step") && j["step"].is_number())
      return j["step"].get<double>();
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

}  // namespace

MetricsLogger::MetricsLogger(const std::string& dir, bool tensorboard)
    : path_(dir + "/metrics.jsonl") {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError("metrics: cannot create " + dir + ": " + ec.message());
  f_ = open_append(path_);
  if (tensorboard) tb_ = std::make_unique<TensorBoardWriter>(dir + "/tensorboard");
}

MetricsLogger::~MetricsLogger() {
  if (f_ && std::fclose(f_) != 0) {  // destructors log, never throw (STYLE.md section 6)
    LOG(ERROR) << "metrics: closing " << path_ << " failed: " << std::strerror(errno);
  }
}

void MetricsLogger::truncate_after(int64_t step) {
  if (std::fflush(f_) != 0) io_fail("write", path_, errno);
  std::ifstream in(path_, std::ios::binary);
  if (!in) io_fail("read", path_, errno);
  std::string kept, line;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    // NB: a line without its newline at the end of the file was torn by a kill: dropped too.
    std::optional<double> s = in.eof() ? std::nullopt : line_step(line);
    if (s && *s <= double(step)) {
      kept += line + "\n";
    } else {
      ++dropped;
    }
  }
  if (in.bad()) io_fail("read", path_, errno);
  in.close();
  const std::string tmp = path_ + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (!out) io_fail("open", tmp, errno);
  const bool ok = std::fwrite(kept.data(), 1, kept.size(), out) == kept.size() &&
                  std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
  const int err = errno;
  std::fclose(out);
  if (!ok) io_fail("write", tmp, err);
  std::fclose(f_);
  f_ = nullptr;
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) io_fail("replace", path_, errno);
  f_ = open_append(path_);
  if (dropped > 0) {
    LOG(INFO) << "metrics: resuming at step " << step << ": dropped " << dropped
              << " later record(s) from " << path_;
  }
  if (tb_) tb_->truncate_after(step);
}

void MetricsLogger::write(const MetricRecord& record, const std::string& tb_prefix) {
  std::string line = "{";
  int64_t step = 0;
  for (size_t i = 0; i < record.size(); ++i) {
    const auto& [k, v] = record[i];
    if (k == "step") step = int64_t(v);
    line += (i ? ", \"" : "\"") + k + "\": " + json_number(v);
  }
  line += "}\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    io_fail("write", path_, errno);
  if (tb_) {
    for (const auto& [k, v] : record)
      if (k != "step") tb_->add_scalar(tb_prefix + k, float(v), step);
    tb_->flush();
  }
}

std::string format_duration(double s) {
  if (!(s >= 0) || std::isinf(s)) return "?";
  int64_t t = int64_t(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof(buf), "%lldh%02lldm", (long long)(t / 3600), (long long)(t % 3600 / 60));
  else if (t >= 60) std::snprintf(buf, sizeof(buf), "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
  else std::snprintf(buf, sizeof(buf), "%llds", (long long)t);
  return buf;
}

ProgressDisplay::ProgressDisplay(int64_t total_steps, bool force_plain, int64_t plain_every)
    : total_(total_steps), tty_(!force_plain && ::isatty(STDOUT_FILENO)),
      plain_every_(std::max<int64_t>(plain_every, 1)), start_(std::chrono::steady_clock::now()) {}

void ProgressDisplay::update(int64_t step, double loss, double lr, double tokens_per_s) {
  auto now = std::chrono::steady_clock::now();
  if (start_step_ < 0) {
    start_step_ = step - 1;
    start_ = now;
  }
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double per_step = step > start_step_ ? elapsed / double(step - start_step_) : 0.0;
  double eta = per_step * double(total_ - step);
  char tok[32];
  if (tokens_per_s >= 1e3) std::snprintf(tok, sizeof(tok), "%.1fk", tokens_per_s / 1e3);
  else std::snprintf(tok, sizeof(tok), "%.0f", tokens_per_s);
  char line[256];
  if (tty_) {
    constexpr int kWidth = 24;
    int filled = total_ > 0 ? int(kWidth * step / total_) : 0;
    std::string bar(size_t(filled), '#');
    bar.resize(kWidth, '.');
    std::snprintf(line, sizeof(line), "\rstep %lld/%lld [%s] loss %.4f lr %.2e %s tok/s ETA %s\033[K",
                  (long long)step, (long long)total_, bar.c_str(), loss, lr, tok,
                  format_duration(eta).c_str());
    std::fputs(line, stdout);
    std::fflush(stdout);
    dirty_ = true;
  } else if (step % plain_every_ == 0 || step == total_ || step == start_step_ + 1) {
    std::snprintf(line, sizeof(line), "step %lld/%lld loss %.4f lr %.2e %s tok/s ETA %s\n",
                  (long long)step, (long long)total_, loss, lr, tok, format_duration(eta).c_str());
    std::fputs(line, stdout);
    std::fflush(stdout);
  }
}

void ProgressDisplay::message(const std::string& text) {
  if (dirty_) std::fputs("\n", stdout);
  dirty_ = false;
  std::fputs((text + "\n").c_str(), stdout);
  std::fflush(stdout);
}

void ProgressDisplay::finish() {
  if (dirty_) std::fputs("\n", stdout);
  dirty_ = false;
  std::fflush(stdout);
}

}  // namespace loom::train

// Metrics: JSONL records, TensorBoard record framing (CRC32C, masked CRCs), duration formatting,
// write failures as IoErrors (issue 15 D5: a full disk lost metrics with exit 0), and truncation
// of both logs at a resume step (a resumed run logged its replayed steps twice).
// That the real TensorBoard reads our event files is checked by tests/train/check_tensorboard.py
// (registered with CTest when a Python with the tensorboard package is found at configure time).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <vector>
#include <sstream>

#include "core/util/Check.h"
#include "train/Metrics.h"
#include "train/TensorBoard.h"

namespace fs = std::filesystem;

namespace loom::train {
namespace {

TEST(MetricsTest, Crc32cMatchesTheStandardCheckValue) {
  // CRC-32C check value for "123456789" (RFC 3720, appendix B.4).
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(MetricsTest, JsonlHasOneObjectPerRecordAndTensorboardRecordsAreFramed) {
  fs::path dir = fs::temp_directory_path() / "loom_metrics_test";
  fs::remove_all(dir);
  {
    MetricsLogger log(dir.string(), /*tensorboard=*/true);
    log.write({{"step", 1}, {"loss", 3.5}, {"lr", 0.0006}});
    log.write({{"step", 2}, {"loss", std::nan("")}});
  }
  std::ifstream f(dir / "metrics.jsonl");
  std::string l1, l2, l3;
  std::getline(f, l1);
  std::getline(f, l2);
  EXPECT_FALSE(std::getline(f, l3));
  EXPECT_EQ(l1, R"({"step": 1, "loss": 3.5, "lr": 0.00059999999999999995})");
  EXPECT_EQ(l2, R"({"step": 2, "loss": null})");

  // Walk the TFRecord framing: header event + 3 scalars (loss, lr, loss).
  std::string path;
  for (const auto& e : fs::directory_iterator(dir / "tensorboard")) path = e.path().string();
  std::ifstream ev(path, std::ios::binary);
  std::stringstream ss;
  ss << ev.rdbuf();
  std::string bytes = ss.str();
  size_t pos = 0;
  int records = 0;
  auto mask = [](uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; };
  while (pos < bytes.size()) {
    ASSERT_LE(pos + 12, bytes.size());
    uint64_t len;
    uint32_t lcrc, dcrc;
    std::memcpy(&len, bytes.data() + pos, 8);
    std::memcpy(&lcrc, bytes.data() + pos + 8, 4);
    EXPECT_EQ(lcrc, mask(crc32c(bytes.data() + pos, 8)));
    ASSERT_LE(pos + 12 + len + 4, bytes.size());
    std::memcpy(&dcrc, bytes.data() + pos + 12 + len, 4);
    EXPECT_EQ(dcrc, mask(crc32c(bytes.data() + pos + 12, len)));
    pos += 12 + len + 4;
    ++records;
  }
  EXPECT_EQ(records, 4);
  EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
  EXPECT_NE(bytes.find("train/loss"), std::string::npos);
  fs::remove_all(dir);
}

TEST(MetricsTest, DurationsReadNaturally) {
  EXPECT_EQ(format_duration(45), "45s");
  EXPECT_EQ(format_duration(192), "3m12s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");
}

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <class Fn>
std::string io_error(Fn&& fn) {
  try {
    fn();
  } catch (const IoError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected IoError";
  return "";
}

// /dev/full fails every write with ENOSPC: a full disk without needing one.
TEST(MetricsTest, AFullDiskIsAnIoErrorNamingTheFileNotSilence) {
  fs::path dir = fresh_dir("loom_metrics_full");
  fs::create_symlink("/dev/full", dir / "metrics.jsonl");
  MetricsLogger log(dir.string(), /*tensorboard=*/false);
  std::string m = io_error([&] { log.write({{"step", 1}, {"loss", 2.5}}); });
  EXPECT_NE(m.find((dir / "metrics.jsonl").string()), std::string::npos) << m;
  EXPECT_NE(m.find("No space left on device"), std::string::npos) << m;
  fs::remove_all(dir);
  // A directory that cannot hold the file is named too.
  EXPECT_NE(io_error([] { MetricsLogger bad("/dev/null/run", false); }).find("/dev/null/run"),
            std::string::npos);
}

// RLIMIT_FSIZE makes writes past a size fail (EFBIG), as a full filesystem would; SIGXFSZ is
// ignored so the write returns the error instead of killing the process.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &old_);
    rlimit lim = old_;
    lim.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  sighandler_t old_handler_;
};

TEST(MetricsTest, TensorBoardWriteFailuresAreIoErrorsNamingTheEventFile) {
  fs::path dir = fresh_dir("loom_metrics_tbfull");
  std::string m;
  {
    MetricsLogger log(dir.string(), /*tensorboard=*/true);
    log.write({{"step", 1}, {"loss", 2.5}});
    FileSizeLimit limit(fs::file_size(dir / "metrics.jsonl") + 40);
    m = io_error([&] {
      for (int s = 2; s < 50; ++s) log.write({{"step", double(s)}, {"loss", 2.5}});
    });
  }
  EXPECT_NE(m.find("File too large"), std::string::npos) << m;
  EXPECT_TRUE(m.find("metrics.jsonl") != std::string::npos ||
              m.find("events.out.tfevents") != std::string::npos)
      << m;
  {  // and the TensorBoard writer on its own
    TensorBoardWriter tb((dir / "tb").string());
    FileSizeLimit limit(fs::file_size(tb.path()) + 10);
    m = io_error([&] {
      for (int s = 0; s < 50; ++s) tb.add_scalar("train/loss", 1.0f, s);
      tb.flush();
    });
    EXPECT_NE(m.find(tb.path()), std::string::npos) << m;
  }
  fs::remove_all(dir);
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

// Steps of the scalar events (every event but the file-version header) over all event files.
std::vector<int64_t> event_steps(const fs::path& dir) {
  std::vector<int64_t> steps;
  for (const auto& e : fs::directory_iterator(dir))
    for (const auto& [step, data] : read_event_records(e.path().string()))
      if (data.find("brain.Event") == std::string::npos) steps.push_back(step);
  std::sort(steps.begin(), steps.end());
  return steps;
}

// A run resumed from the step-3 checkpoint replays steps 4 and 5: their old records must go.
TEST(MetricsTest, TruncateAfterRemovesLaterRecordsFromBothLogs) {
  fs::path dir = fresh_dir("loom_metrics_truncate");
  {
    MetricsLogger first(dir.string(), /*tensorboard=*/true);
    for (int s = 1; s <= 5; ++s) first.write({{"step", double(s)}, {"loss", 1.0 / s}});
    first.write({{"step", 4}, {"val_loss", 0.5}}, "eval/");
  }
  { std::ofstream(dir / "metrics.jsonl", std::ios::app) << R"({"step": 2, "lo)"; }  // torn
  MetricsLogger resumed(dir.string(), /*tensorboard=*/true);
  resumed.truncate_after(3);
  resumed.write({{"step", 4}, {"loss", 0.2}});
  std::vector<std::string> lines = lines_of(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2], R"({"step": 3, "loss": 0.33333333333333331})");
  EXPECT_EQ(lines[3], R"({"step": 4, "loss": 0.20000000000000001})");
  // TensorBoard: the first run's file keeps steps 1-3 (one scalar each), the new file has step 4.
  EXPECT_EQ(event_steps(dir / "tensorboard"), (std::vector<int64_t>{1, 2, 3, 4}));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::train

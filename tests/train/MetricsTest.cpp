// Metrics: JSONL records, TensorBoard record framing (CRC32C, masked CRCs), duration formatting.
// That the real TensorBoard reads our event files is checked by tests/train/check_tensorboard.py
// (registered with CTest when a Python with the tensorboard package is found at configure time).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cmath>
#include <cstring>
#include <sstream>

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

}  // namespace
}  // namespace loom::train

// Writes TensorBoard event files (the TFRecord framing of tensorflow.Event protos) with scalar
// summaries, without TensorFlow or protobuf-generated code: the few fields needed are encoded by
// hand. The real TensorBoard reads the result (tested with the PyPI package).
//   TensorBoardWriter tb("out/tb");     // creates out/tb/events.out.tfevents.<time>.<host>
//   tb.add_scalar("train/loss", 3.14f, /*step=*/10);
// Write failures are IoErrors naming the file and the system's reason.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace loom::train {

class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, float value, int64_t step);
  void flush();  // IoError when the buffered records cannot be written
  const std::string& path() const { return path_; }
  // Rewrites every event file of this writer's directory (its own included) without the events of
  // steps > step; see MetricsLogger::truncate_after.
  void truncate_after(int64_t step);

 private:
  void write_record(const std::string& data);
  std::string dir_, path_;
  std::FILE* f_ = nullptr;
};

uint32_t crc32c(const void* data, size_t n);  // Castagnoli CRC (what TFRecord uses)

// The records of an event file as (event step, event bytes), up to the first torn or corrupt
// record (a writer killed mid-record); IoError when the file cannot be read.
std::vector<std::pair<int64_t, std::string>> read_event_records(const std::string& path);

}  // namespace loom::train

// Writes TensorBoard event files (the TFRecord framing of tensorflow.Event protos) with scalar
// summaries, without TensorFlow or protobuf-generated code: the few fields needed are encoded by
// hand. The real TensorBoard reads the result (tested with the PyPI package).
//   TensorBoardWriter tb("out/tb");     // creates out/tb/events.out.tfevents.<time>.<host>
//   tb.add_scalar("train/loss", 3.14f, /*step=*/10);
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace loom::train {

class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, float value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* f_ = nullptr;
};

uint32_t crc32c(const void* data, size_t n);  // Castagnoli CRC (what TFRecord uses)

}  // namespace loom::train

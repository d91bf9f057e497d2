// TensorBoard event writer (see TensorBoard.h). Record framing: uint64 length, uint32 masked
// crc32c(length), payload, uint32 masked crc32c(payload). Event fields: wall_time=1 (double),
// step=2 (int64), file_version=3 (string), summary=5 { value=1 { tag=1, simple_value=2 (float) } }.
#include "train/TensorBoard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/util/Check.h"

namespace loom::train {

namespace {

uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

void put_varint(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(char((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(char(v));
}
void put_tag(std::string& s, int field, int wire) { put_varint(s, uint64_t(field << 3 | wire)); }
void put_bytes(std::string& s, int field, const std::string& b) {
  put_tag(s, field, 2);
  put_varint(s, b.size());
  s += b;
}
template <class T>
void put_fixed(std::string& s, int field, T v) {
  put_tag(s, field, sizeof(T) == 8 ? 1 : 5);
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // little-endian hosts (x86-64, aarch64)
  s.append(buf, sizeof(T));
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string event_header(double wall, int64_t step) {
  std::string e;
  put_fixed<double>(e, 1, wall);
  put_tag(e, 2, 0);
  put_varint(e, uint64_t(step));
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  uint32_t crc = 0xffffffffu;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(int64_t(now_seconds())) + "." + host +
          "." + std::to_string(::getpid());
  f_ = std::fopen(path_.c_str(), "wb");
  LOOM_CHECK(f_ != nullptr, "tensorboard: cannot create ", path_);
  std::string e = event_header(now_seconds(), 0);
  put_bytes(e, 3, "brain.Event:2");
  write_record(e);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_) std::fclose(f_);
}

void TensorBoardWriter::write_record(const std::string& data) {
  uint64_t len = data.size();
  char hdr[12];
  std::memcpy(hdr, &len, 8);
  uint32_t lcrc = mask_crc(crc32c(hdr, 8));
  std::memcpy(hdr + 8, &lcrc, 4);
  uint32_t dcrc = mask_crc(crc32c(data.data(), data.size()));
  std::fwrite(hdr, 1, 12, f_);
  std::fwrite(data.data(), 1, data.size(), f_);
  std::fwrite(&dcrc, 1, 4, f_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, float value, int64_t step) {
  std::string v;
  put_bytes(v, 1, tag);
  put_fixed<float>(v, 2, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string e = event_header(now_seconds(), step);
  put_bytes(e, 5, summary);
  write_record(e);
}

void TensorBoardWriter::flush() { std::fflush(f_); }

}  // namespace loom::train

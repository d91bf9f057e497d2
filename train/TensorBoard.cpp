// TensorBoard event writer (see TensorBoard.h). Record framing: uint64 length, uint32 masked
// crc32c(length), payload, uint32 masked crc32c(payload). Event fields: wall_time=1 (double),
// step=2 (int64), file_version=3 (string), summary=5 { value=1 { tag=1, simple_value=2 (float) } }.
#include "train/TensorBoard.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/util/Check.h"
#include "core/util/Logging.h"

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

[[noreturn]] void io_fail(const std::string& what, const std::string& path, int err) {
  throw IoError("tensorboard: cannot " + what + " " + path + ": " + std::strerror(err));
}

// TFRecord framing of one serialized event.
std::string frame_record(const std::string& data) {
  uint64_t len = data.size();
  char hdr[12];
  std::memcpy(hdr, &len, 8);
  uint32_t lcrc = mask_crc(crc32c(hdr, 8));
  std::memcpy(hdr + 8, &lcrc, 4);
  uint32_t dcrc = mask_crc(crc32c(data.data(), data.size()));
  std::string rec(hdr, 12);
  rec += data;
  rec.append(reinterpret_cast<const char*>(&dcrc), 4);
  return rec;
}

// The step (field 2, varint) of a serialized Event; 0 when absent or unreadable.
int64_t event_step(const std::string& e) {
  size_t pos = 0;
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && pos < e.size(); shift += 7) {
      const auto b = uint8_t(e[pos++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (pos < e.size()) {
    uint64_t key = 0, v = 0;
    if (!varint(key)) return 0;
    switch (key & 7) {
      case 0:
        if (!varint(v)) return 0;
        if ((key >> 3) == 2) return int64_t(v);
        break;
      case 1: pos += 8; break;
      case 5: pos += 4; break;
      case 2:
        if (!varint(v) || v > e.size() - pos) return 0;
        pos += size_t(v);
        break;
      default: return 0;
    }
  }
  return 0;
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

TensorBoardWriter::TensorBoardWriter(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError("tensorboard: cannot create " + dir + ": " + ec.message());
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const std::string base = dir + "/events.out.tfevents." + std::to_string(int64_t(now_seconds())) +
                           "." + host + "." + std::to_string(::getpid());
  // NB: a second writer of the same process in the same second gets its own file ("x": exclusive
  // create) instead of truncating the first one's.
  for (int n = 0; !f_; ++n) {
    path_ = n == 0 ? base : base + "." + std::to_string(n);
    f_ = std::fopen(path_.c_str(), "wbx");
    if (!f_ && (errno != EEXIST || n >= 1000)) io_fail("create", path_, errno);
  }
  std::string e = event_header(now_seconds(), 0);
  put_bytes(e, 3, "brain.Event:2");
  write_record(e);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (f_ && std::fclose(f_) != 0) {  // destructors log, never throw (STYLE.md section 6)
    LOG(ERROR) << "tensorboard: closing " << path_ << " failed: " << std::strerror(errno);
  }
}

void TensorBoardWriter::write_record(const std::string& data) {
  std::string rec = frame_record(data);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size()) io_fail("write", path_, errno);
}

void TensorBoardWriter::truncate_after(int64_t step) {
  flush();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string p = e.path().string();
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) != 0) continue;
    std::string kept;
    size_t dropped = 0;
    for (const auto& [s, data] : read_event_records(p)) {
      if (s <= step) {
        kept += frame_record(data);
      } else {
        ++dropped;
      }
    }
    if (dropped == 0 && kept.size() == std::filesystem::file_size(p)) continue;
    const std::string tmp = p + ".tmp";
    std::FILE* out = std::fopen(tmp.c_str(), "wb");
    if (!out) io_fail("create", tmp, errno);
    const bool ok = std::fwrite(kept.data(), 1, kept.size(), out) == kept.size() &&
                    std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
    const int err = errno;
    std::fclose(out);
    if (!ok) io_fail("write", tmp, err);
    const bool own = p == path_;
    if (own) {
      std::fclose(f_);
      f_ = nullptr;
    }
    if (std::rename(tmp.c_str(), p.c_str()) != 0) io_fail("replace", p, errno);
    if (own) {
      f_ = std::fopen(path_.c_str(), "ab");
      if (!f_) io_fail("open", path_, errno);
    }
  }
  if (ec) throw IoError("tensorboard: cannot list " + dir_ + ": " + ec.message());
}

std::vector<std::pair<int64_t, std::string>> read_event_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) io_fail("read", path, errno);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  std::vector<std::pair<int64_t, std::string>> out;
  size_t pos = 0;
  while (pos + 12 <= bytes.size()) {
    uint64_t len = 0;
    uint32_t lcrc = 0, dcrc = 0;
    std::memcpy(&len, bytes.data() + pos, 8);
    std::memcpy(&lcrc, bytes.data() + pos + 8, 4);
    if (lcrc != mask_crc(crc32c(bytes.data() + pos, 8)) || len > bytes.size() - pos - 12 ||
        bytes.size() - pos - 12 - len < 4)
      break;  // a torn or corrupt tail
    std::memcpy(&dcrc, bytes.data() + pos + 12 + len, 4);
    std::string data = bytes.substr(pos + 12, len);
    if (dcrc != mask_crc(crc32c(data.data(), data.size()))) break;
    out.emplace_back(event_step(data), std::move(data));
    pos += 12 + len + 4;
  }
  return out;
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

void TensorBoardWriter::flush() {
  if (std::fflush(f_) != 0) io_fail("write", path_, errno);
}

}  // namespace loom::train

// Shared by the fuzz harnesses (tests/fuzz/Fuzz*.cpp, TESTPLAN U13): each harness defines
// LLVMFuzzerTestOneInput, feeds the bytes to one reader, and accepts only the documented Loom error
// classes it names; any other exception escapes, which libFuzzer (and the replay driver
// FuzzMain.cpp) reports as a crash, as it does sanitizer reports, hangs and aborts.
//   accept<ConfigError>([&] { parse_text(text); });   // anything but a ConfigError fails the run
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/util/Check.h"

namespace loom::fuzz {

// Writes bytes to a per-process scratch file (on /dev/shm when present) and returns its path; the
// readers under test take paths.
inline std::string scratch_file(const char* name, std::string_view bytes) {
  static const std::string dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  std::string path = dir + "/loom_fuzz_" + std::to_string(::getpid()) + "_" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw InternalError("fuzz: cannot create " + path);
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

// The input as text, and a small reader for structured harnesses.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  bool empty() const { return n_ == 0; }
  uint8_t byte() { return n_ ? (--n_, *p_++) : 0; }
  uint64_t u64(int bytes = 8) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | byte();
    return v;
  }
  // The next `len` bytes (fewer at the end).
  std::string_view take(size_t len) {
    len = len < n_ ? len : n_;
    std::string_view s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return s;
  }
  std::string_view rest() { return take(n_); }

 private:
  const uint8_t* p_;
  size_t n_;
};

}  // namespace loom::fuzz

namespace loom::fuzz {

// Runs fn; an exception of one of the listed classes is an expected rejection, anything else
// escapes (and fails the run).
template <class First, class... More, class Fn>
void accept(Fn&& fn) {
  try {
    if constexpr (sizeof...(More) == 0)
      fn();
    else
      accept<More...>(fn);
  } catch (const First&) {
  }
}

}  // namespace loom::fuzz

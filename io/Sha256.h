// SHA-256 (FIPS 180-4) for checkpoint manifests: every file in a checkpoint is listed with its
// size and digest so a flipped byte or a truncated file is caught before anything is loaded.
// A thin wrapper over OpenSSL's EVP interface (SHA-NI / AVX2 code paths, ~5x the speed of a
// portable C loop); OpenSSL stays private to loom_io.
//   Sha256 h; h.update(p, n); std::string hex = h.hex_digest();   // 64 lowercase hex digits
//   std::string d = sha256_file("ck/step_00000020/tensors.h5");
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace loom::io {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  std::string hex_digest();  // finalises; call once

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Digest of a byte string.
std::string sha256_hex(std::string_view data);

// Digest of a whole file; throws CheckpointError naming the file if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace loom::io

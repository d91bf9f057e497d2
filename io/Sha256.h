// SHA-256 (FIPS 180-4) for checkpoint manifests: every file in a checkpoint is listed with its
// size and digest so a flipped byte or a truncated file is caught before anything is loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace loom::io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::string hex_digest();  // finalises; call once

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// Digest of a whole file; throws CheckpointError naming the file if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace loom::io

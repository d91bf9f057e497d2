// SHA-256 through OpenSSL's EVP digest interface (see Sha256.h). Any OpenSSL failure is an
// InternalError: digests of in-memory bytes do not fail for user input.
#include "io/Sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/util/Check.h"

namespace loom::io {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  LOOM_INTERNAL_ASSERT(
      ctx_->md != nullptr && EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) == 1,
      "OpenSSL SHA-256 initialisation failed");
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t n) {
  LOOM_INTERNAL_ASSERT(EVP_DigestUpdate(ctx_->md, data, n) == 1, "OpenSSL SHA-256 update failed");
}

std::string Sha256::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  LOOM_INTERNAL_ASSERT(EVP_DigestFinal_ex(ctx_->md, digest, &len) == 1 && len == 32,
                       "OpenSSL SHA-256 finalisation failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned i = 0; i < 32; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex_digest();
}

std::string sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  LOOM_CHECK_T(CheckpointError, f != nullptr, "checkpoint: cannot read ", path, ": ",
               std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(size_t(4) << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) h.update(buf.data(), n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  LOOM_CHECK_T(CheckpointError, !failed, "checkpoint: read error in ", path);
  return h.hex_digest();
}

}  // namespace loom::io

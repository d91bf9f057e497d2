// SHA-256 against the published FIPS 180-2 / NIST test vectors (issue 15: a padding bug that wrote
// the length in bytes instead of bits verified against itself but no longer matched sha256sum,
// because no test compared with published digests), plus streaming and file digests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/util/Check.h"
#include "io/Sha256.h"

namespace loom::io {
namespace {

// FIPS 180-2 Appendix B (and NIST's SHA-256 example values).
TEST(Sha256Test, MatchesThePublishedTestVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),  // 448 bits
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, StreamingInUnevenPiecesEqualsOneShot) {
  const std::string msg(1000000, 'a');
  Sha256 h;
  size_t pos = 0;
  for (size_t step = 1; pos < msg.size(); step = step * 3 + 1) {
    size_t n = std::min(step, msg.size() - pos);
    h.update(msg.data() + pos, n);
    pos += n;
  }
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, FileDigestEqualsTheDigestOfItsBytesAndMissingFilesAreCheckpointErrors) {
  std::filesystem::path p = std::filesystem::temp_directory_path() /
                            ("loom_sha256_" + std::to_string(::getpid()) + ".bin");
  std::string bytes;
  for (int i = 0; i < (5 << 20) + 17; ++i) bytes.push_back(char(i * 131 % 251));  // > 1 buffer
  std::ofstream(p, std::ios::binary) << bytes;
  EXPECT_EQ(sha256_file(p.string()), sha256_hex(bytes));
  std::filesystem::remove(p);
  try {
    sha256_file(p.string());
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::io

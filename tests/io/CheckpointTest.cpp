// Checkpoint I/O: bitwise round trip, atomic layout, and every corruption case failing with a
// CheckpointError that names the file and expected vs actual (TESTPLAN U8).
#include <gtest/gtest.h>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <functional>

#include "core/random/Generator.h"
#include "io/Checkpoint.h"

namespace fs = std::filesystem;

namespace loom::io {
namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("loom_ckpt_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(root_);
    Generator g(5);
    ck_.step = 20;
    ck_.tensors["model/wte.weight"] = Tensor::randn({16, 8}, g);
    ck_.tensors["model/blocks.0.attn.qkv.bias"] = Tensor::randn({24}, g, DType::F64);
    ck_.tensors["optim/step"] = Tensor::full({}, 20, DType::I64);
    ck_.tensors["model/half"] = Tensor::randn({3}, g).to(DType::BF16);
    ck_.meta["config"] = "model { n_layer: 2 }";
    ck_.meta["rng"] = R"({"seed": 5, "offset": 1234})";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string corrupt_and_expect(const std::function<void(const std::string&)>& damage) {
    std::string dir = save_checkpoint(root_.string(), ck_);
    damage(dir);
    try {
      load_checkpoint(dir);
    } catch (const CheckpointError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected CheckpointError";
    return "";
  }

  fs::path root_;
  Checkpoint ck_;
};

TEST_F(CheckpointTest, RoundTripIsBitwise) {
  std::string dir = save_checkpoint(root_.string(), ck_);
  EXPECT_EQ(dir, (root_ / "step_00000020").string());
  EXPECT_EQ(find_latest_checkpoint(root_.string()), dir);
  Checkpoint back = load_checkpoint(dir);
  EXPECT_EQ(back.step, 20);
  ASSERT_EQ(back.tensors.size(), ck_.tensors.size());
  for (const auto& [name, t] : ck_.tensors) {
    ASSERT_TRUE(back.tensors.count(name)) << name;
    const Tensor& b = back.tensors.at(name);
    EXPECT_EQ(b.dtype(), t.dtype()) << name;
    EXPECT_EQ(b.shape(), t.shape()) << name;
    EXPECT_EQ(std::memcmp(b.raw_data(), t.contiguous().raw_data(), t.nbytes()), 0) << name;
  }
  EXPECT_EQ(back.meta.at("config"), ck_.meta.at("config"));
  EXPECT_EQ(back.meta.at("rng"), ck_.meta.at("rng"));
}

TEST_F(CheckpointTest, LatestSkipsIncompleteAndKeepLastPrunes) {
  ck_.step = 5;
  save_checkpoint(root_.string(), ck_);
  ck_.step = 10;
  std::string ten = save_checkpoint(root_.string(), ck_);
  // A save that died before its rename, and one whose manifest was never written.
  fs::create_directories(root_ / "step_00000015.tmp-999");
  fs::create_directories(root_ / "step_00000020");
  std::ofstream(root_ / "step_00000020" / "tensors.h5") << "partial";
  EXPECT_EQ(find_latest_checkpoint(root_.string()), ten);
  ck_.step = 30;
  save_checkpoint(root_.string(), ck_, /*keep_last=*/2);
  EXPECT_FALSE(fs::exists(root_ / "step_00000005"));
  EXPECT_TRUE(fs::exists(root_ / "step_00000030"));
  EXPECT_EQ(find_latest_checkpoint((root_ / "nothing").string()), "");
}

TEST_F(CheckpointTest, FlippedByteIsCaughtByTheHash) {
  std::string m = corrupt_and_expect([](const std::string& dir) {
    std::fstream f(dir + "/tensors.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-20, std::ios::end);
    char c;
    f.get(c);
    f.seekp(-20, std::ios::end);
    f.put(char(c ^ 0x5a));
  });
  EXPECT_NE(m.find("tensors.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("expected sha256"), std::string::npos) << m;
}

TEST_F(CheckpointTest, TruncatedFileIsCaughtBySize) {
  std::string m = corrupt_and_expect([](const std::string& dir) {
    fs::resize_file(dir + "/tensors.h5", fs::file_size(dir + "/tensors.h5") / 2);
  });
  EXPECT_NE(m.find("tensors.h5"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
}

TEST_F(CheckpointTest, MissingFileIsNamed) {
  std::string m = corrupt_and_expect([](const std::string& dir) { fs::remove(dir + "/meta.json"); });
  EXPECT_NE(m.find("meta.json is missing"), std::string::npos) << m;
}

TEST_F(CheckpointTest, WrongFormatAndFutureVersionAreRejected) {
  std::string m = corrupt_and_expect([](const std::string& dir) {
    std::ofstream(dir + "/MANIFEST.json") << R"({"format": "megatron", "version": 1, "files": {}})";
  });
  EXPECT_NE(m.find("expected format \"loom-checkpoint\""), std::string::npos) << m;
  m = corrupt_and_expect([](const std::string& dir) {
    std::ofstream(dir + "/MANIFEST.json") << R"({"format": "loom-checkpoint", "version": 7, "files": {}})";
  });
  EXPECT_NE(m.find("expected version 1 to 2, got 7"), std::string::npos) << m;
  EXPECT_NE(m.find("newer Loom"), std::string::npos) << m;
  m = corrupt_and_expect([](const std::string& dir) { std::ofstream(dir + "/MANIFEST.json") << "{oops"; });
  EXPECT_NE(m.find("not valid JSON"), std::string::npos) << m;
}

}  // namespace
}  // namespace loom::io

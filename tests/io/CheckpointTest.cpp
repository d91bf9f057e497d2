// Checkpoint I/O: bitwise round trip, atomic layout, and every corruption case failing with a
// CheckpointError that names the file and expected vs actual (TESTPLAN U8), including manifests and
// tensor files crafted with valid hashes (issue 15: raw JSON exceptions, sizes that made the
// reader allocate what the file does not hold), and checkpoints of versions 1 and 2.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/random/Generator.h"
#include "io/Checkpoint.h"
#include "io/CheckpointShards.h"
#include "io/Sha256.h"

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
  EXPECT_NE(m.find("expected version 1 to 3, got 7"), std::string::npos) << m;
  EXPECT_NE(m.find("newer Loom"), std::string::npos) << m;
  m = corrupt_and_expect([](const std::string& dir) { std::ofstream(dir + "/MANIFEST.json") << "{oops"; });
  EXPECT_NE(m.find("not valid JSON"), std::string::npos) << m;
}

// Rewrites MANIFEST.json of dir with `edit` applied and every listed file re-hashed, the way an
// attacker (or a drill) produces a checkpoint whose hashes all verify.
void rewrite_manifest(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(dir + "/MANIFEST.json");
  nlohmann::json m = nlohmann::json::parse(in);
  for (auto& [name, info] : m["files"].items())
    if (fs::exists(dir + "/" + name))
      info = {{"bytes", fs::file_size(dir + "/" + name)},
              {"sha256", sha256_file(dir + "/" + name)}};
  edit(m);
  std::ofstream(dir + "/MANIFEST.json", std::ios::trunc) << m.dump(1);
}

TEST_F(CheckpointTest, MistypedManifestFieldsAreCheckpointErrorsNotJsonExceptions) {
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> cases = {
      {[](nlohmann::json& m) { m["files"]["meta.json"]["bytes"] = "12"; }, "\"bytes\" an integer"},
      {[](nlohmann::json& m) { m["version"] = "3"; }, "expected version 1 to 3"},
      {[](nlohmann::json& m) { m["format"] = 5; }, "expected format"},
      {[](nlohmann::json& m) { m["step"] = -4; }, "\"step\" in [0"},
      {[](nlohmann::json& m) { m["sequence"] = 1.5; }, "\"sequence\" an integer"},
      {[](nlohmann::json& m) { m["files"]["../../etc/passwd"] = m["files"]["meta.json"]; },
       "plain file names"},
      {[](nlohmann::json& m) { m["tensor_groups"]["model/"] = {"other.h5"}; },
       "which \"files\" does not list"},
      {[](nlohmann::json& m) { m["files"]["meta.json"]["sha256"] = "abc"; }, "64 lowercase hex"},
      {[](nlohmann::json& m) { m["files"] = nlohmann::json::array(); }, "\"files\" object"},
  };
  for (const auto& [edit, expect] : cases) {
    std::string m =
        corrupt_and_expect([&](const std::string& dir) { rewrite_manifest(dir, edit); });
    EXPECT_NE(m.find("MANIFEST.json"), std::string::npos) << m;
    EXPECT_NE(m.find(expect), std::string::npos) << m;
    EXPECT_EQ(m.find("json.exception"), std::string::npos) << m;
  }
}

TEST_F(CheckpointTest, MalformedMetaStepIsACheckpointError) {
  std::string m = corrupt_and_expect([](const std::string& dir) {
    std::ofstream(dir + "/meta.json", std::ios::trunc) << R"({"step": "abc", "config": ""})";
    rewrite_manifest(dir, [](nlohmann::json&) {});
  });
  EXPECT_NE(m.find("meta.json"), std::string::npos) << m;
  EXPECT_NE(m.find("decimal integer"), std::string::npos) << m;
}

// Writes one dataset with the raw HDF5 API: `dims` as the header claims them, `stored` elements of
// data actually written (chunked and partly unwritten when fewer), an optional loom_shard
// attribute.
void write_crafted(const std::string& path, const std::string& name, std::vector<hsize_t> dims,
                   hsize_t stored, const std::string& shard) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  std::vector<hsize_t> chunk(dims.size(), 1);
  H5Pset_chunk(dcpl, int(chunk.size()), chunk.data());
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t ds = H5Dcreate2(f, name.c_str(), H5T_NATIVE_FLOAT, space, lcpl, dcpl, H5P_DEFAULT);
  H5Pclose(lcpl);
  EXPECT_GE(ds, 0) << "crafting " << path;
  if (stored > 0) {
    std::vector<float> data(stored, 1.0f);
    std::vector<hsize_t> start(dims.size(), 0), count(dims.size(), 1);
    count.back() = stored;
    hid_t mem = H5Screate_simple(1, &stored, nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, data.data());
    H5Sclose(mem);
  }
  auto attr = [&](const char* key, const std::string& v) {
    hid_t s = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, v.size() + 1);
    hid_t a = H5Acreate2(ds, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v.c_str());
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(s);
  };
  attr("loom_dtype", "f32");
  if (!shard.empty()) attr("loom_shard", shard);
  H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
}

// Adds a string attribute to dataset `name` of an existing file.
void write_attr(const std::string& path, const std::string& name, const char* key,
                const std::string& v) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t ds = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  hid_t s = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, v.size() + 1);
  hid_t a = H5Acreate2(ds, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT_GE(H5Awrite(a, t, v.c_str()), 0);
  H5Aclose(a);
  H5Tclose(t);
  H5Sclose(s);
  H5Dclose(ds);
  H5Fclose(f);
}

// Issue 15 D1: shapes in a tensor file are input. A header claiming 2^40 x 2^20 elements with no
// data behind it made the reader allocate from it.
TEST_F(CheckpointTest, TensorShapesTheFileDoesNotBackAreRejectedBeforeAllocating) {
  std::string m = corrupt_and_expect([](const std::string& dir) {
    write_crafted(dir + "/model.h5", "model/wte.weight", {hsize_t(1) << 40, hsize_t(1) << 20}, 4,
                  "");
    rewrite_manifest(dir, [](nlohmann::json&) {});
  });
  EXPECT_NE(m.find("tensor \"model/wte.weight\""), std::string::npos) << m;
  EXPECT_NE(m.find("contiguous, unfiltered storage"), std::string::npos) << m;
}

TEST_F(CheckpointTest, AShardSpecClaimingAHugeLogicalTensorIsRejectedBeforeAllocating) {
  // A 4-element piece of a claimed (2^40, 4) tensor: the gap check must not allocate 2^42 bytes.
  const std::string shard =
      R"({"logical":[1099511627776,4],"view":[1099511627776,4],"dim":0,"offset":0,"length":1})";
  std::string m = corrupt_and_expect([&](const std::string& dir) {
    detail::write_tensor_file(dir + "/model.h5", {}, {{"model/w", {Tensor::full({1, 4}, 1.0),
        ShardSpec::from_json(shard, "test")}}}, false);
    rewrite_manifest(dir, [](nlohmann::json&) {});
  });
  EXPECT_NE(m.find("tensor \"model/w\""), std::string::npos) << m;
  EXPECT_NE(m.find("leave 4398046511100 of 4398046511104 elements uncovered"), std::string::npos)
      << m;
  // Offsets near 2^63 (offset + length overflowed in the shard check) are rejected as such.
  m = corrupt_and_expect([&](const std::string& dir) {
    ShardSpec s = ShardSpec::split({8, 4}, 0, 0, 8);
    detail::write_tensor_file(dir + "/model.h5", {}, {{"model/w", {Tensor::full({1, 4}, 1.0), s}}},
                              false);
    hid_t f = H5Fopen((dir + "/model.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "model/w", H5P_DEFAULT);
    H5Adelete(ds, "loom_shard");
    H5Dclose(ds);
    H5Fclose(f);
    write_attr(dir + "/model.h5", "model/w", "loom_shard",
               R"({"logical":[8,4],"view":[8,4],"dim":0,"offset":9223372036854775807,"length":1})");
    rewrite_manifest(dir, [](nlohmann::json&) {});
  });
  EXPECT_NE(m.find("sizes in [0, 2^61]"), std::string::npos) << m;
}

// Versions 1 and 2 (before model and state were split): one tensors.h5, or tensors-rNNNNN.h5 per
// rank; their manifests have no tensor groups or sequence. Both still load, whole or weights only.
TEST_F(CheckpointTest, Version1And2CheckpointsStillLoad) {
  for (int version : {1, 2}) {
    const std::string dir = (root_ / ("v" + std::to_string(version))).string();
    fs::create_directories(dir);
    nlohmann::json m = {{"format", "loom-checkpoint"}, {"version", version}, {"step", 20},
                        {"files", nlohmann::json::object()}};
    std::vector<std::string> files;
    if (version == 1) {
      detail::write_tensor_file(dir + "/tensors.h5", ck_.tensors, {}, false);
      files = {"tensors.h5"};
    } else {  // two ranks, each holding half of the tensors
      std::map<std::string, Tensor> a, b;
      for (const auto& [n, t] : ck_.tensors) (a.size() <= b.size() ? a : b)[n] = t;
      detail::write_tensor_file(dir + "/tensors-r00000.h5", a, {}, false);
      detail::write_tensor_file(dir + "/tensors-r00001.h5", b, {}, false);
      files = {"tensors-r00000.h5", "tensors-r00001.h5"};
      m["world_size"] = 2;
    }
    std::ofstream(dir + "/meta.json") << R"({"config": "model { n_layer: 2 }", "step": "20"})";
    files.push_back("meta.json");
    for (const std::string& f : files)
      m["files"][f] = {{"bytes", fs::file_size(dir + "/" + f)},
                       {"sha256", sha256_file(dir + "/" + f)}};
    std::ofstream(dir + "/MANIFEST.json") << m.dump(1);
    Checkpoint back = load_checkpoint(dir);
    EXPECT_EQ(back.step, 20);
    EXPECT_EQ(back.meta.at("config"), "model { n_layer: 2 }");
    ASSERT_EQ(back.tensors.size(), ck_.tensors.size()) << "version " << version;
    for (const auto& [name, t] : ck_.tensors)
      EXPECT_EQ(
          std::memcmp(back.tensors.at(name).raw_data(), t.contiguous().raw_data(), t.nbytes()), 0)
          << name;
    EXPECT_EQ(load_checkpoint(dir, LoadOptions::weights_only()).tensors.size(), 3u);
  }
}

}  // namespace
}  // namespace loom::io

// What a checkpoint refuses and requires (issue 15): a non-finite model or optimizer tensor is
// never saved (D4), a load can require every tensor of the state and names each missing one (D13),
// the weights load without reading or hashing the optimizer state, and a checkpoint carries its
// tokenizer files (hash-checked), so it is usable from any working directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <tuple>

#include "io/Checkpoint.h"

namespace fs = std::filesystem;

namespace loom::io {
namespace {

class CheckpointOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() /
             ("loom_ckopts_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    fs::remove_all(root_);
    ck_.step = 7;
    ck_.tensors["model/wte.weight"] = Tensor::full({6, 4}, 0.25);
    ck_.tensors["model/ln.bias"] = Tensor::full({4}, 0.5, DType::BF16);
    ck_.tensors["optim/exp_avg/wte.weight"] = Tensor::full({6, 4}, 0.125);
    ck_.tensors["optim/exp_avg_sq/wte.weight"] = Tensor::full({6, 4}, 0.0625);
    ck_.tensors["optim/step"] = Tensor::full({}, 7, DType::I64);
    ck_.meta["config"] = "model { n_layer: 1 }";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string root_;
  Checkpoint ck_;
};

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// D4: a step that made the weights NaN was checkpointed, and keep_last then pruned the last good
// checkpoint.
TEST_F(CheckpointOptionsTest, NonFiniteModelOrOptimizerTensorsAreNeverSaved) {
  std::string good = save_checkpoint(root_, ck_, 1);
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  const double kInf = std::numeric_limits<double>::infinity();
  for (const auto& [name, value, dtype] : {std::tuple{"model/wte.weight", kNaN, DType::F32},
                                           {"model/ln.bias", kInf, DType::BF16},
                                           {"optim/exp_avg_sq/wte.weight", -kInf, DType::F32},
                                           {"optim/exp_avg/wte.weight", kNaN, DType::F64}}) {
    Checkpoint bad = ck_;
    bad.step = 8;
    bad.tensors[name] = Tensor::full({6, 4}, 1.0, dtype);
    Tensor t = bad.tensors[name];
    t.narrow(0, 3, 1).fill_(value);
    try {
      save_checkpoint(root_, bad, 1);
      ADD_FAILURE() << "expected NonFiniteError for " << name;
    } catch (const NonFiniteError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    EXPECT_EQ(find_latest_checkpoint(root_), good) << name;
    EXPECT_FALSE(fs::exists(root_ + "/step_00000008")) << name;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(root_), fs::directory_iterator()), 2);  // + latest
  // Other names (e.g. a loss-scaler history) are not the model state; allow_non_finite is the
  // explicit escape hatch.
  Checkpoint other = ck_;
  other.tensors["scaler/history"] = Tensor::full({2}, kInf);
  EXPECT_NO_THROW(save_checkpoint(root_, other));
  Checkpoint diverged = ck_;
  diverged.step = 9;
  diverged.tensors["model/wte.weight"] = Tensor::full({6, 4}, kNaN);
  SaveOptions o;
  o.allow_non_finite = true;
  EXPECT_NO_THROW(save_checkpoint(root_, diverged, o));
}

TEST_F(CheckpointOptionsTest, AllFiniteChecksEveryFloatingDtype) {
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    Tensor t = Tensor::full({5}, 2.0, dt);
    EXPECT_TRUE(all_finite(t)) << dtype_name(dt);
    t.narrow(0, 4, 1).fill_(kNaN);
    EXPECT_FALSE(all_finite(t)) << dtype_name(dt);
  }
  EXPECT_TRUE(all_finite(Tensor::full({3}, 5, DType::I64)));
  std::map<std::string, Tensor> m = {{"model/a", Tensor::full({2}, kNaN)},
                                     {"other/b", Tensor::full({2}, kNaN)},
                                     {"model/c", Tensor::full({2}, 1.0)}};
  EXPECT_EQ(non_finite_tensors(m, {"model/"}), std::vector<std::string>{"model/a"});
}

// D13: a checkpoint missing an optimizer tensor (manifest re-hashed) resumed with zeroed moments.
TEST_F(CheckpointOptionsTest, RequiredNamesAreAllCheckedAndEveryMissingOneIsNamed) {
  Checkpoint partial = ck_;
  partial.tensors.erase("optim/exp_avg_sq/wte.weight");
  partial.tensors.erase("model/ln.bias");
  std::string dir = save_checkpoint(root_, partial);
  LoadOptions o;
  o.required = {"model/wte.weight", "model/ln.bias", "optim/exp_avg/wte.weight",
                "optim/exp_avg_sq/wte.weight"};
  std::string m = error_of([&] { load_checkpoint(dir, o); });
  EXPECT_NE(m.find("2 are missing"), std::string::npos) << m;
  EXPECT_NE(m.find("model/ln.bias"), std::string::npos) << m;
  EXPECT_NE(m.find("optim/exp_avg_sq/wte.weight"), std::string::npos) << m;
  EXPECT_NE(m.find(dir), std::string::npos) << m;
  o.required.pop_back();
  o.required.erase(o.required.begin() + 1);
  Checkpoint ck = load_checkpoint(dir, o);
  // The same check after loading, for names only meta.json tells (e.g. the optimizer's params).
  m = error_of([&] { check_required_tensors(ck, {"optim/exp_avg_sq/wte.weight"}, dir); });
  EXPECT_NE(m.find("1 are missing:\n  optim/exp_avg_sq/wte.weight"), std::string::npos) << m;
  EXPECT_NO_THROW(check_required_tensors(ck, {"model/wte.weight"}, dir));
}

TEST_F(CheckpointOptionsTest, WeightsOnlyLoadNeitherReadsNorHashesTheOptimizerState) {
  std::string dir = save_checkpoint(root_, ck_);
  {  // flip a byte of the optimizer-state file: its hash no longer matches
    std::fstream f(dir + "/tensors.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-20, std::ios::end);
    f.put('\x5a');
  }
  Checkpoint w = load_checkpoint(dir, LoadOptions::weights_only());
  EXPECT_EQ(w.step, 7);
  EXPECT_EQ(w.meta.at("config"), "model { n_layer: 1 }");
  EXPECT_EQ(w.tensors.size(), 2u);
  EXPECT_EQ(w.tensors.at("model/wte.weight").to_vector<float>(), std::vector<float>(24, 0.25f));
  std::string m = error_of([&] { load_checkpoint(dir); });
  EXPECT_NE(m.find("tensors.h5: expected sha256"), std::string::npos) << m;
  // A prefix inside a group loads only the names under it.
  LoadOptions only_wte;
  only_wte.prefixes = {"model/wte"};
  EXPECT_EQ(load_checkpoint(dir, only_wte).tensors.size(), 1u);
}

TEST_F(CheckpointOptionsTest, TheCheckpointCarriesItsTokenizerFiles) {
  fs::create_directories(root_ + "/tok");
  std::ofstream(root_ + "/tok/vocab.json") << R"({"a": 0, "b": 1})";
  std::ofstream(root_ + "/tok/merges.txt") << "#version: 0.2\na b\n";
  std::ofstream(root_ + "/tok/tokenizer_config.json") << R"({"model_max_length": 8})";
  ck_.tokenizer = tokenizer_files_of(root_ + "/tok/vocab.json", root_ + "/tok/merges.txt", "");
  EXPECT_EQ(ck_.tokenizer.tokenizer_config_json, root_ + "/tok/tokenizer_config.json");
  std::string dir = save_checkpoint(root_ + "/ck", ck_);
  fs::remove_all(root_ + "/tok");  // the run's copy is gone: the checkpoint's remains
  TokenizerFiles t = checkpoint_tokenizer(dir);
  EXPECT_EQ(t.vocab_json, fs::absolute(dir).string() + "/vocab.json");
  EXPECT_EQ(t.merges_txt, fs::absolute(dir).string() + "/merges.txt");
  EXPECT_EQ(t.tokenizer_config_json, fs::absolute(dir).string() + "/tokenizer_config.json");
  EXPECT_TRUE(t.tokenizer_json.empty());
  std::ifstream v(t.vocab_json);
  std::string text((std::istreambuf_iterator<char>(v)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, R"({"a": 0, "b": 1})");
  EXPECT_EQ(load_checkpoint(dir, LoadOptions::weights_only()).tokenizer.merges_txt, t.merges_txt);
  std::ofstream(t.merges_txt, std::ios::app) << "c d\n";  // modified: caught by its hash
  EXPECT_NE(error_of([&] { checkpoint_tokenizer(dir); }).find("merges.txt"), std::string::npos);
  // Without a tokenizer the checkpoint carries none; a named file that is absent is a config error.
  Checkpoint plain = ck_;
  plain.tokenizer = {};
  EXPECT_TRUE(checkpoint_tokenizer(save_checkpoint(root_ + "/plain", plain)).empty());
  EXPECT_THROW(tokenizer_files_of("", "", root_ + "/missing/tokenizer.json"), ConfigError);
}

}  // namespace
}  // namespace loom::io

// "hf:" sources (io/HfSource.h, issue 12 item 2): ORG/NAME found in a fake local Hugging Face
// cache (refs/main, a lone snapshot, HF_HUB_CACHE before HF_HOME), a helpful error when absent;
// the model section filled from config.json when the run gives none, and checked field by field
// (directly set or through a preset) when it does.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/ConfigLoader.h"
#include "core/util/Check.h"
#include "io/HfSource.h"
#include "tests/support/Golden.h"

namespace fs = std::filesystem;

namespace loom::io {
namespace {

const std::string kQwen2 = testing::golden_dir() + "hf_llama/qwen2_mqa_bias_tied";

class HfSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("loom_hfsource_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ::setenv("HF_HOME", (dir_ / "home").c_str(), 1);
    ::unsetenv("HF_HUB_CACHE");
  }
  void TearDown() override {
    ::unsetenv("HF_HOME");
    fs::remove_all(dir_);
  }
  // <root>/models--ORG--NAME/snapshots/<rev> with config.json saying which rev it is.
  fs::path snapshot(const fs::path& root, const std::string& repo, const std::string& rev) {
    const fs::path p = root / ("models--" + repo) / "snapshots" / rev;
    fs::create_directories(p);
    std::ofstream(p / "config.json") << "{}";
    return p;
  }
  fs::path dir_;
};

TEST_F(HfSourceTest, OrgNameResolvesThroughTheCacheLayout) {
  const fs::path hub = dir_ / "home" / "hub";
  EXPECT_EQ(resolve_hf_dir("org/solo"), snapshot(hub, "org--solo", "aaa").string());  // lone one
  snapshot(hub, "org--two", "old");
  const fs::path main = snapshot(hub, "org--two", "new");
  fs::create_directories(hub / "models--org--two" / "refs");
  std::ofstream(hub / "models--org--two" / "refs" / "main") << "new\n";
  EXPECT_EQ(resolve_hf_dir("org/two"), main.string());
  ::setenv("HF_HUB_CACHE", (dir_ / "hub2").c_str(), 1);  // searched before HF_HOME
  EXPECT_EQ(resolve_hf_dir("org/solo"), snapshot(dir_ / "hub2", "org--solo", "bbb").string());
  EXPECT_EQ(resolve_hf_dir(kQwen2), kQwen2);  // an existing directory is itself
}

TEST_F(HfSourceTest, AnUncachedModelNamesWhereItLooked) {
  try {
    resolve_hf_dir("org/absent");
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find((dir_ / "home" / "hub" / "models--org--absent").string()), std::string::npos)
        << m;
    EXPECT_NE(m.find("never downloads"), std::string::npos) << m;
  }
}

TEST_F(HfSourceTest, ModelSectionComesFromConfigJson) {
  config::RunConfig cfg = config::parse_text("init_from: \"hf:" + kQwen2 + "\"\n"
                                             "model { dropout: 0.1 block_size: 32 }");
  model_from_init(cfg);
  const config::ModelConfig& m = cfg.model();
  EXPECT_EQ(m.n_layer(), 2);  // qwen2_mqa_bias_tied/config.json
  EXPECT_EQ(m.n_embd(), 40);
  EXPECT_EQ(m.n_head(), 4);
  EXPECT_EQ(m.n_kv_head(), 1);
  EXPECT_EQ(m.intermediate_size(), 56);
  EXPECT_EQ(m.vocab_size(), 89);
  EXPECT_EQ(m.rope_theta(), 1e6);
  EXPECT_EQ(m.norm_eps(), 1e-6);
  EXPECT_TRUE(m.qkv_bias());
  EXPECT_FALSE(m.bias());
  EXPECT_TRUE(m.tie_embeddings());
  EXPECT_EQ(m.block_size(), 32);  // rotary: a shorter context than max_position_embeddings 64
  EXPECT_EQ(m.dropout(), 0.1);    // the run's
  EXPECT_FALSE(m.has_init_std());  // left to the defaults
}

TEST_F(HfSourceTest, AGivenOrPresetFieldThatDisagreesIsAConfigError) {
  auto error_of = [&](const std::string& model) {
    config::RunConfig cfg = config::parse_text("init_from: \"hf:" + kQwen2 + "\"\n" + model);
    try {
      model_from_init(cfg);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string direct = error_of("model { n_embd: 40 n_kv_head: 2 block_size: 128 }");
  EXPECT_NE(direct.find("model.n_kv_head=2 but " + kQwen2 + " has 1"), std::string::npos)
      << direct;
  EXPECT_NE(direct.find("model.block_size=128"), std::string::npos) << direct;
  EXPECT_EQ(direct.find("n_embd"), std::string::npos) << direct;  // 40 agrees
  const std::string preset = error_of("model { preset: \"llama-3.2-1b\" }");
  EXPECT_NE(preset.find("model.n_layer=16 but"), std::string::npos) << preset;
  EXPECT_NE(preset.find("model.qkv_bias=false"), std::string::npos) << preset;
}

}  // namespace
}  // namespace loom::io

// TrainerReliabilityTest: regression tests of issue 15's trainer defects, in process on a tiny
// model. D4: a step whose loss or gradient norm is not finite stops the run with NonFiniteError
// before the update, so the parameters stay those of the last good step and nothing non-finite is
// saved.
// D13: a checkpoint whose optimizer state lacks a tensor (its manifest re-hashed, so every hash
// verifies) is a CheckpointError naming the tensor, not a resume with zeroed moments.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "config/ConfigLoader.h"
#include "data/TokenDataset.h"
#include "io/Checkpoint.h"
#include "io/Sha256.h"
#include "train/Trainer.h"

namespace loom::train {
namespace {

namespace fs = std::filesystem;

struct TrainerReliability : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("loom_trainer_rel_" + std::to_string(::getpid()));
  std::string cfg_path = (dir / "tiny.pbtxt").string();

  void SetUp() override {
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::mt19937 rng(7);
    std::vector<int32_t> tokens(4000);
    for (int32_t& t : tokens) t = int32_t(rng() % 64u);
    const std::vector<int64_t> offsets = {0, 2000, 4000};
    data::write_token_file((dir / "train.h5").string(), tokens, offsets, 64, "random", "train");
    std::ofstream(cfg_path)
        << "name: \"t\"\nmax_steps: 2\noutput_dir: \"" << (dir / "run").string() << "\"\n"
        << "model { n_layer: 2 n_head: 2 n_embd: 16 vocab_size: 64 block_size: 8 dropout: 0 }\n"
        << "data { train_path: \"" << (dir / "train.h5").string() << "\" seq_len: 8 }\n"
        << "optimizer { lr: 1e-3 }\nschedule { warmup_steps: 0 }\n"
        << "batch { micro_batch_size: 2 }\neval { interval: 0 }\n"
        << "checkpoint { interval: 1 keep_last: 0 }\nlogging { progress: OFF }\n";
  }
  void TearDown() override { fs::remove_all(dir); }

  config::RunConfig cfg(std::vector<std::string> sets) const {
    return config::resolve(cfg_path, sets, 1);
  }
};

std::map<std::string, std::vector<float>> parameters_of(models::GPT& m) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, t] : m.named_parameters()) out[name] = t.contiguous().to_vector<float>();
  return out;
}

// A diverging run (lr 1e30: step 3's update makes the weights ~1e30, step 4's loss overflows)
// stops with NonFiniteError; what it saved is finite and step 4 was neither applied nor saved.
TEST_F(TrainerReliability, DivergingRunStopsAndSavesNothingNonFinite) {
  Trainer(cfg({})).run();
  Trainer bad(cfg({"max_steps=6", "optimizer.lr=1e30"}));
  EXPECT_THROW(bad.run(), NonFiniteError);
  EXPECT_TRUE(fs::exists(dir / "run/checkpoints/step_00000003/MANIFEST.json"));
  EXPECT_FALSE(fs::exists(dir / "run/checkpoints/step_00000004"));
  Trainer again(cfg({"max_steps=3"}));  // loads step 3, nothing left to run
  const auto at_three = parameters_of(again.model());
  const auto at_failure = parameters_of(bad.model());
  ASSERT_EQ(at_three.size(), at_failure.size());
  for (const auto& [name, v] : at_three) EXPECT_EQ(v, at_failure.at(name)) << name;
}

// D4: a finite loss with a non-finite gradient norm (one NaN gradient element) stops in
// Learner::step before the optimizer touches any parameter.
TEST_F(TrainerReliability, NonFiniteGradientNormStopsBeforeTheUpdate) {
  Trainer t(cfg({}));
  pipeline::MicroBatch mb;
  std::vector<int64_t> ids(16), targets(16);
  for (int64_t i = 0; i < 16; ++i) ids[size_t(i)] = targets[size_t((i + 15) % 16)] = i % 64;
  mb.ids = Tensor::from_vector(ids, {2, 8});
  mb.targets = Tensor::from_vector(targets, {2, 8});
  mb.index = 0;
  const double loss = t.policy().forward_backward({mb}, 1);
  ASSERT_TRUE(std::isfinite(loss));
  const auto before = parameters_of(t.model());
  Tensor g = t.model().named_parameters().front().second.grad();
  ASSERT_TRUE(g.defined());
  g.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(t.policy().step(1e-3), NonFiniteError);
  const auto after = parameters_of(t.model());
  for (const auto& [name, v] : before) EXPECT_EQ(v, after.at(name)) << name << " was updated";
}

// Deletes every dataset of `file` whose path contains `needle`; returns how many.
int delete_datasets(const std::string& file, const std::string& needle) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  std::vector<std::string> names;
  H5Ovisit(
      f, H5_INDEX_NAME, H5_ITER_NATIVE,
      [](hid_t, const char* name, const H5O_info_t* info, void* out) -> herr_t {
        if (info->type == H5O_TYPE_DATASET)
          static_cast<std::vector<std::string>*>(out)->push_back(name);
        return 0;
      },
      &names);
  int n = 0;
  for (const std::string& name : names)
    if (name.find(needle) != std::string::npos && H5Ldelete(f, name.c_str(), H5P_DEFAULT) >= 0) ++n;
  H5Fclose(f);
  return n;
}

TEST_F(TrainerReliability, CheckpointMissingAnOptimizerTensorIsACheckpointError) {
  Trainer(cfg({})).run();
  const fs::path step = dir / "run/checkpoints/step_00000002";
  int deleted = 0;
  for (const auto& e : fs::directory_iterator(step))
    if (e.path().filename().string().rfind("tensors", 0) == 0)
      deleted += delete_datasets(e.path().string(), "exp_avg_sq/wte.weight");
  ASSERT_EQ(deleted, 1);
  // Re-hash every file so the manifest verifies: only the state check can catch it now.
  std::ifstream in(step / "MANIFEST.json");
  nlohmann::json m = nlohmann::json::parse(in);
  for (auto& [name, info] : m["files"].items())
    info = {{"bytes", fs::file_size(step / name)},
            {"sha256", io::sha256_file((step / name).string())}};
  std::ofstream((step / "MANIFEST.json").string(), std::ios::trunc) << m.dump(1);

  try {
    Trainer(cfg({"max_steps=3"})).run();
    FAIL() << "resumed from a checkpoint without optim exp_avg_sq of wte.weight";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("exp_avg_sq/wte.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom::train

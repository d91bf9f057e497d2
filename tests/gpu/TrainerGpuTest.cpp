// `loom train`'s Trainer on the GPU (issue 5 item 3): the same tiny run in f32 and under bf16
// autocast (dtype BF16: bf16 compute, f32 master weights, gradients and AdamW state), with and
// without dynamic loss scaling. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "data/TokenDataset.h"
#include "config/ConfigLoader.h"
#include "tests/gpu/GpuCompare.h"
#include "train/Trainer.h"

namespace loom {
namespace {

struct TrainerGpu : ::testing::Test {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("loom_trainer_gpu_" + std::to_string(::getpid()));
  void SetUp() override {
    std::filesystem::create_directories(dir);
    std::mt19937 rng(3);
    std::vector<int32_t> tokens(20000);
    for (auto& t : tokens) t = int32_t(rng() % 256u);
    const std::vector<int64_t> offsets = {0, 10000, 20000};
    data::write_token_file((dir / "train.h5").string(), tokens, offsets, 256, "random", "train");
    std::ofstream(dir / "cfg.pbtxt")
        << "name: \"gpu\"\nmax_steps: 20\ndevice: CUDA\noutput_dir: \"" << (dir / "run").string()
        << "\"\nmodel { n_layer: 4 n_head: 4 n_embd: 64 vocab_size: 256 block_size: 32 "
           "dropout: 0 }\n"
        << "data { train_path: \"" << (dir / "train.h5").string() << "\" seq_len: 32 }\n"
        << "optimizer { lr: 3e-3 beta2: 0.95 weight_decay: 0.1 grad_clip: 1.0 }\n"
        << "schedule { warmup_steps: 5 }\nbatch { micro_batch_size: 8 }\n"
        << "eval { interval: 0 }\ncheckpoint { interval: 0 resume: \"none\" }\n"
        << "logging { progress: OFF tensorboard: false }\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::vector<double> losses(std::vector<std::string> sets) {
    sets.push_back("output_dir=" + (dir / ("run" + std::to_string(runs_++))).string());
    config::RunConfig cfg = config::resolve((dir / "cfg.pbtxt").string(), sets, 1);
    train::Trainer t(cfg);
    return t.run().losses;
  }
  int runs_ = 0;
};

void expect_bf16_band(const std::vector<double>& bf, const std::vector<double>& f32) {
  ASSERT_EQ(bf.size(), f32.size());
  ASSERT_EQ(bf.size(), 20u);
  // TESTPLAN G-3 bf16 band (llm.c's, as in AutocastGpuTest): |delta loss| <= 0.05 at every step
  // and <= 1% relative at step 20.
  for (size_t i = 0; i < bf.size(); ++i) EXPECT_NEAR(bf[i], f32[i], 0.05) << "step " << i + 1;
  EXPECT_NEAR(bf.back(), f32.back(), 0.01 * std::abs(f32.back()));
  EXPECT_LT(bf.back(), bf.front());
  EXPECT_NE(bf, f32);  // really ran in bf16
}

TEST_F(TrainerGpu, Bf16AutocastTracksTheF32Run) {
  LOOM_REQUIRE_GPU();
  expect_bf16_band(losses({"dtype=BF16"}), losses({"dtype=F32"}));
}

TEST_F(TrainerGpu, Bf16WithLossScalingTracksTheF32Run) {
  LOOM_REQUIRE_GPU();
  expect_bf16_band(losses({"dtype=BF16", "loss_scale.init_scale=65536"}), losses({"dtype=F32"}));
}

}  // namespace
}  // namespace loom

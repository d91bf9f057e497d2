// Trainer in one process on a tiny GPT (issue 15: defects that only mutation testing found):
// evaluation over a validation set shorter than eval.steps is the mean of the batches actually
// run; evaluation with dropout configured runs the model in eval mode; gradient accumulation
// under SGD without clipping (which, unlike AdamW plus clipping, does not hide a uniform gradient
// scale) equals one step on the whole batch. References are computed here from the model itself.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "config/ConfigLoader.h"
#include "core/autograd/GradMode.h"
#include "data/TokenDataset.h"
#include "tests/data/DataTestUtil.h"
#include "train/Trainer.h"

namespace loom::train {
namespace {

using data::testing::TempDir;

constexpr int64_t kT = 16;         // seq_len
constexpr int64_t kValWindows = 6;  // 3 batches of 2: fewer than eval.steps = 5

// Train tokens (learnable: t -> (7t + 3) mod 64 with 10 % noise), validation tokens (random), and
// a config; `extra` adds or overrides sections.
struct TinyRun {
  explicit TinyRun(const TempDir& dir, const std::string& extra = "") {
    std::mt19937 rng(3);
    std::vector<int32_t> train(4096), val(size_t(kValWindows * kT + 1));
    int32_t prev = 0;
    for (auto& t : train) {
      t = rng() % 10u == 0 ? int32_t(rng() % 64u) : (7 * prev + 3) % 64;
      prev = t;
    }
    for (auto& t : val) t = int32_t(rng() % 64u);
    val_tokens = val;
    data::write_token_file((dir / "train.h5").string(), train,
                           std::vector<int64_t>{0, int64_t(train.size())}, 64, "t", "train");
    data::write_token_file((dir / "val.h5").string(), val,
                           std::vector<int64_t>{0, int64_t(val.size())}, 64, "t", "val");
    cfg = (dir / "run.pbtxt").string();
    const std::string out = (dir / "out").string(), tr = (dir / "train.h5").string(),
                      va = (dir / "val.h5").string();
    std::ofstream(cfg) << "name: \"t\"\nseed: 7\nmax_steps: 3\noutput_dir: \"" << out << "\"\n"
                       << "model { n_layer: 2 n_head: 2 n_embd: 32 vocab_size: 64 "
                          "block_size: 16 dropout: 0 }\n"
                       << "data { train_path: \"" << tr << "\" val_path: \"" << va
                       << "\" seq_len: 16 }\n"
                       << "batch { micro_batch_size: 2 global_batch_size: 2 }\n"
                       << "eval { interval: 0 steps: 5 }\n"
                       << "checkpoint { interval: 0 resume: \"none\" }\n"
                       << "logging { progress: OFF tensorboard: false }\n"
                       << extra;
  }
  std::string cfg;
  std::vector<int32_t> val_tokens;
};

// The mean over the validation set's 3 batches of 2 windows of the model's eval-mode loss.
double hand_val_loss(models::GPT& model, const std::vector<int32_t>& val) {
  NoGradGuard no_grad;
  model.eval();
  double sum = 0.0;
  for (int64_t b = 0; b < kValWindows / 2; ++b) {
    std::vector<int64_t> ids, targets;
    for (int64_t w = 2 * b; w < 2 * b + 2; ++w)
      for (int64_t t = 0; t < kT; ++t) {
        ids.push_back(val[size_t(w * kT + t)]);
        targets.push_back(val[size_t(w * kT + t + 1)]);
      }
    sum += model.loss(Tensor::from_vector<int64_t>(ids, {2, kT}),
                      Tensor::from_vector<int64_t>(targets, {2, kT}))
               .item();
  }
  model.train();
  return sum / double(kValWindows / 2);
}

// Both evaluations run the same f32 forward on the same windows; only the order of three
// double-precision additions may differ: 1e-12 relative is far above that rounding and far below
// any other mean (the batch losses of an untrained model differ by ~1e-2).
constexpr double kEvalTol = 1e-12;

TEST(TrainerTest, ValLossOfASetShorterThanEvalStepsIsTheMeanOfTheBatchesRun) {
  TempDir dir;
  TinyRun run(dir);
  Trainer t(config::resolve(run.cfg, {}, 1));
  const double want = hand_val_loss(t.model(), run.val_tokens);
  const double got = t.evaluate();
  EXPECT_NEAR(got, want, kEvalTol * want);
}

TEST(TrainerTest, EvaluationWithDropoutConfiguredRunsInEvalMode) {
  TempDir dir;
  TinyRun run(dir);
  Trainer t(config::resolve(run.cfg, {"model.dropout=0.3"}, 1));
  const double want = hand_val_loss(t.model(), run.val_tokens);
  const double first = t.evaluate();
  EXPECT_NEAR(first, want, kEvalTol * want);
  EXPECT_EQ(t.evaluate(), first);
  EXPECT_TRUE(t.model().is_training()) << "training continues with dropout on";
}

std::vector<std::vector<float>> params_of(Trainer& t) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, p] : t.model().named_parameters()) out.push_back(p.to_vector<float>());
  return out;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(TrainerTest, AccumulatingTwoMicroBatchesUnderSgdEqualsOneStepOnBoth) {
  TempDir dir;
  TinyRun run(dir, "optimizer { type: SGD lr: 0.5 grad_clip: 0 weight_decay: 0 }\n"
                   "schedule { warmup_steps: 0 decay: CONSTANT }\n");
  Trainer accum(config::resolve(
      run.cfg, {"batch.micro_batch_size=2", "batch.global_batch_size=4"}, 1));
  Trainer whole(config::resolve(run.cfg,
                                {"batch.micro_batch_size=4", "batch.global_batch_size=4",
                                 "output_dir=" + (dir / "out_whole").string()},
                                1));
  TrainSummary a = accum.run(), w = whole.run();
  ASSERT_EQ(a.losses.size(), 3u);
  ASSERT_EQ(w.losses.size(), 3u);
  // f32 gradients summed over 4 rows at once or 2 + 2 (then halved): rounding of ~1e-7 per
  // element, through 3 plain SGD steps; the DP tests' bound of 1e-5 relative. A missing 1/N
  // doubles every update (lr 0.5: a relative parameter change of ~1e-2).
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(a.losses[i], w.losses[i], 1e-5 * w.losses[i]) << "step " << i + 1;
  std::vector<std::vector<float>> pa = params_of(accum), pw = params_of(whole);
  ASSERT_EQ(pa.size(), pw.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_LE(rel_diff(pa[i], pw[i]), 1e-5) << "param " << i;
}

}  // namespace
}  // namespace loom::train

// `loom pipeline` end to end (issue 6 item 5): a two-stage pipeline (pretrain -> sft, the SFT stage
// starting from "@pretrain") on a tokenizer trained by loom. Checks: both stages run and the state
// file records them; `--until` stops after a stage and a re-run skips it; a stage whose final
// checkpoint is gone resumes from its own newest checkpoint with the same losses; a reference to an
// unknown or later stage exits 2 naming it before anything runs.
#include <map>
#include <random>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

// step -> loss of the training records (no "eval/" prefix) in metrics.jsonl, last one wins.
std::map<int, std::string> losses_of(const std::string& metrics_path) {
  std::ifstream f(metrics_path);
  std::map<int, std::string> out;
  for (std::string line; std::getline(f, line);) {
    size_t s = line.find("\"step\": "), l = line.find("\"loss\": ");
    if (s == std::string::npos || l == std::string::npos) continue;
    out[std::stoi(line.substr(s + 8))] = line.substr(l + 8, line.find_first_of(",}", l) - l - 8);
  }
  return out;
}

int count_lines_with(const std::string& path, const std::string& needle) {
  std::ifstream f(path);
  int n = 0;
  for (std::string line; std::getline(f, line);) n += line.find(needle) != std::string::npos;
  return n;
}

class PipelineCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("pipeline");
    std::mt19937 rng(3);
    const std::vector<std::string> words = {"red", "blue", "cat", "dog", "sun", "moon"};
    std::string corpus, sft;
    for (int i = 0; i < 64; ++i) {
      const std::string w = words[rng() % words.size()], v = words[rng() % words.size()];
      corpus += "say " + w + ": " + w + " " + v + "\n";
      sft += "{\"prompt\":\"say " + w + ":\",\"response\":\" " + w + "\"}\n";
    }
    write_file(file("corpus.txt"), corpus);
    write_file(file("sft.jsonl"), sft);
    RunResult t = run_loom("tokenizer train --input " + file("corpus.txt") +
                           " --vocab-size 280 --output " + file("tok"));
    ASSERT_EQ(t.exit_code, 0) << t.output;
    RunResult p =
        run_loom("preprocess --input " + file("corpus.txt") + " --output " + file("train.h5") +
                 " --vocab " + file("tok/vocab.json") + " --merges " + file("tok/merges.txt"));
    ASSERT_EQ(p.exit_code, 0) << p.output;
    // The shared model, tokenizer and batch of both stages, as a RunConfig file.
    write_file(file("common.pbtxt"),
               "model { n_layer: 1 n_head: 2 n_embd: 16 vocab_size: 280 block_size: 16 }\n"
               "data { tokenizer_vocab: \"" +
                   file("tok/vocab.json") + "\" tokenizer_merges: \"" + file("tok/merges.txt") +
                   "\" }\n"
                   "optimizer { lr: 3e-3 }\nschedule { warmup_steps: 1 }\n"
                   "batch { micro_batch_size: 4 global_batch_size: 4 }\n"
                   "checkpoint { interval: 5 keep_last: 0 }\nlogging { progress: OFF }\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string file(const std::string& name) { return dir_->file(name); }

  // A pipeline pretrain -> sft writing to <dir>/<out>; `sft_init` is the SFT stage's init_from.
  static std::string pipeline(const std::string& out, const std::string& sft_init = "@pretrain") {
    const std::string path = file(out + ".pbtxt");
    write_file(path, "output_dir: \"" + file(out) +
                         "\"\n"
                         "stage { name: \"pretrain\" config: \"common.pbtxt\"\n"
                         "  run { stage: PRETRAIN max_steps: 10 data { train_path: \"" +
                         file("train.h5") +
                         "\" seq_len: 16 } } }\n"
                         "stage { name: \"sft\" config: \"common.pbtxt\"\n"
                         "  run { stage: SFT init_from: \"" +
                         sft_init + "\" sft { train_path: \"" + file("sft.jsonl") +
                         "\" } }\n"
                         "  set: \"max_steps=10\" }\n");
    return path;
  }
  static TempDir* dir_;
};

TempDir* PipelineCliTest::dir_ = nullptr;

TEST_F(PipelineCliTest, TwoStagesRunInOrderAndTheSecondStartsFromTheFirst) {
  const std::string p = pipeline("a");
  RunResult dry = run_loom("pipeline " + p + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  // The SFT stage's init_from is the pretrain stage's final checkpoint.
  const std::string pre_ckpt = file("a/pretrain/checkpoints/step_00000010");
  EXPECT_NE(dry.output.find("init_from \"" + pre_ckpt + "\""), std::string::npos) << dry.output;
  EXPECT_FALSE(std::filesystem::exists(file("a/pretrain"))) << "--dry-run must not train";

  RunResult r = run_loom("pipeline " + p);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(pre_ckpt)) << r.output;
  EXPECT_TRUE(std::filesystem::exists(file("a/sft/checkpoints/step_00000010"))) << r.output;
  EXPECT_LT(r.output.find("stage 1/2 pretrain"), r.output.find("stage 2/2 sft")) << r.output;
  EXPECT_EQ(losses_of(file("a/pretrain/metrics.jsonl")).size(), 10u);
  EXPECT_EQ(losses_of(file("a/sft/metrics.jsonl")).size(), 10u);
  const std::string state = file("a/pipeline_state.txt");
  EXPECT_EQ(count_lines_with(state, "pretrain "), 1);
  EXPECT_EQ(count_lines_with(state, "sft "), 1);

  // Everything done: a re-run trains nothing.
  RunResult again = run_loom("pipeline " + p);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("stage 2/2 sft: already done"), std::string::npos) << again.output;
  EXPECT_EQ(count_lines_with(file("a/sft/metrics.jsonl"), "\"loss\""), 10);
}

// Issue 6 item 5: the whole pipeline under the distributed launcher (2 ranks, DP=2), with the
// same stage losses as one process (the global batch is the same; issue 4's DP bound 1e-5).
TEST_F(PipelineCliTest, RunsUnderTheLauncherOnTwoRanks) {
  const std::string one = pipeline("l1"), two = pipeline("l2");
  RunResult a = run_loom("pipeline " + one);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  RunResult b = run_loom("launch -n 2 --pipeline " + two + " --set batch.micro_batch_size=2");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find(" pipeline " + two), std::string::npos) << b.output;
  for (const char* stage : {"pretrain", "sft"}) {
    auto la = values_of(file(std::string("l1/") + stage + "/metrics.jsonl"), "loss");
    auto lb = values_of(file(std::string("l2/") + stage + "/metrics.jsonl"), "loss");
    ASSERT_EQ(la.size(), 10u) << stage;
    ASSERT_EQ(lb.size(), 10u) << stage;
    for (size_t i = 0; i < la.size(); ++i)
      EXPECT_LE(std::abs(la[i] - lb[i]), 1e-5 * std::abs(la[i])) << stage << " step " << i + 1;
  }
  RunResult bad = run_loom("launch -n 2 " + two + " --until sft");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--until"), std::string::npos) << bad.output;
}

TEST_F(PipelineCliTest, AHalfFinishedPipelineResumesWhereItStopped) {
  const std::string p = pipeline("b");
  RunResult first = run_loom("pipeline " + p + " --until pretrain");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_FALSE(std::filesystem::exists(file("b/sft"))) << first.output;
  EXPECT_EQ(count_lines_with(file("b/pipeline_state.txt"), "pretrain "), 1);

  RunResult rest = run_loom("pipeline " + p);
  ASSERT_EQ(rest.exit_code, 0) << rest.output;
  EXPECT_NE(rest.output.find("stage 1/2 pretrain: already done"), std::string::npos) << rest.output;
  // Pretraining ran once: 10 training records, not 20.
  EXPECT_EQ(count_lines_with(file("b/pretrain/metrics.jsonl"), "\"loss\""), 10);
  const std::map<int, std::string> straight = losses_of(file("b/sft/metrics.jsonl"));
  ASSERT_EQ(straight.size(), 10u);

  // An SFT stage interrupted after step 5: its state line and final checkpoint are gone. The
  // re-run resumes it from step_00000005 and repeats steps 6-10 with the same losses (bitwise
  // resume: the printed 17 digits are equal).
  const std::string state = file("b/pipeline_state.txt");
  std::string kept;
  {
    std::ifstream in(state);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("sft ", 0) != 0) kept += line + "\n";
  }
  write_file(state, kept);
  std::filesystem::remove_all(file("b/sft/checkpoints/step_00000010"));
  RunResult resumed = run_loom("pipeline " + p);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("stage sft done (steps 6-10"), std::string::npos) << resumed.output;
  EXPECT_EQ(losses_of(file("b/sft/metrics.jsonl")), straight);
  EXPECT_EQ(count_lines_with(state, "sft "), 1);
}

TEST_F(PipelineCliTest, AnUnknownOrLaterStageReferenceExitsTwoNamingIt) {
  RunResult r = run_loom("pipeline " + pipeline("c", "@pretrian"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("init_from=\"@pretrian\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stage \"sft\""), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(file("c/pretrain"))) << "nothing may run: " << r.output;

  RunResult self = run_loom("pipeline " + pipeline("d", "@sft"));
  EXPECT_EQ(self.exit_code, 2) << self.output;
  EXPECT_NE(self.output.find("earlier stage"), std::string::npos) << self.output;
}

}  // namespace
}  // namespace loom::e2e

// Fine-tuning a Hugging Face GPT-2 (issue 7): `init_from: "hf:DIR"` starts `loom train` from the
// HF weights without a separate conversion step, a mismatching model section is a config error
// naming the fields, and the result exports back with `loom convert --from loom ... --to hf`.
#include <filesystem>

#include "tests/e2e/LoomCli.h"

namespace loom::e2e {
namespace {

const std::string kHf = std::string(LOOM_SOURCE_DIR) + "/tests/golden/hf/gpt2_untied_v300";

std::string hf_config(const TempDir& d, const std::string& model) {
  return "name: \"ft\"\nmax_steps: 4\noutput_dir: \"" + d.file("run") + "\"\ninit_from: \"hf:" +
         kHf + "\"\nmodel { " + model + " }\n" +
         "data { train_path: \"" + d.file("train.h5") + "\" seq_len: 16 }\n"
         "optimizer { lr: 1e-3 }\nbatch { micro_batch_size: 2 }\neval { interval: 0 }\n"
         "logging { progress: OFF }\n";
}

TEST(HfFinetuneTest, TrainsFromHfWeightsAndExportsBack) {
  TempDir d("hf_finetune");
  write_random_dataset(d.file("train.h5"), 3000, 300);
  write_file(d.file("c.pbtxt"),
             hf_config(d, "n_layer: 3 n_head: 2 n_embd: 24 block_size: 32 vocab_size: 300 "
                          "tie_embeddings: false"));
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> losses = losses_of(d.file("run/metrics.jsonl"));
  ASSERT_EQ(losses.size(), 4u);
  // A pretrained start on uniform random tokens begins near ln(300) = 5.70 and stays finite.
  double first = std::stod(losses[0]);
  EXPECT_GT(first, 4.0);
  EXPECT_LT(first, 8.0);
  RunResult e = run_loom("convert --from loom " + d.file("run/checkpoints") + " --to hf " +
                         d.file("export"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_TRUE(std::filesystem::exists(d.file("export/model.safetensors")));
  EXPECT_TRUE(std::filesystem::exists(d.file("export/config.json")));
}

TEST(HfFinetuneTest, MismatchedModelSectionNamesTheFields) {
  TempDir d("hf_mismatch");
  write_random_dataset(d.file("train.h5"), 3000, 300);
  write_file(d.file("c.pbtxt"),
             hf_config(d, "n_layer: 2 n_head: 2 n_embd: 24 block_size: 32 vocab_size: 300 "
                          "tie_embeddings: false"));
  RunResult r = run_loom("train " + d.file("c.pbtxt"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model.n_layer=2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("has 3"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace loom::e2e

// LoRA through the trainer (config lora { }, train/Trainer, rlhf stages): a tiny SFT run trains
// only the adapters (the base stays bit-identical to init_from), its checkpoints hold the adapters
// and their optimizer state alone, a resumed run repeats the uninterrupted one bitwise, and the
// merged Hugging Face export (loom convert's path) is a plain model with the LoRA model's logits
// and the checkpoint loads back as base + adapters (train::load_checkpoint_model, for eval),
// also for a Llama-architecture base read from an HF directory (init_from "hf:").
// DPO with LoRA starts at log 2 (its reference has no adapters and the fresh ones add zero).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "config/ConfigLoader.h"
#include "core/autograd/GradMode.h"
#include "data/BpeTrainer.h"
#include "io/Checkpoint.h"
#include "io/CheckpointReader.h"
#include "io/HfConvert.h"
#include "io/HfSource.h"
#include "parallel/ProcessGroups.h"
#include "parallel/comm/FakeCommunicator.h"
#include "rlhf/Stages.h"
#include "tests/rlhf/RlhfTestUtil.h"
#include "train/Trainer.h"

namespace loom::rlhf {
namespace {

const char* kPairs =
    "{\"prompt\":\"ab:\",\"response\":\"cd\"}\n{\"prompt\":\"hello \",\"response\":\"world\"}\n"
    "{\"prompt\":\"x\",\"response\":\"yz!\"}\n";
const char* kPrefs =
    "{\"prompt\":\"ab:\",\"chosen\":\"cd\",\"rejected\":\"dc\"}\n"
    "{\"prompt\":\"x\",\"chosen\":\"yz!\",\"rejected\":\"zy\"}\n";

struct Fixture {
  testing::TempDir dir;
  std::string model_block;  // GPT-2 architecture; "" for a base from hf: (config.json says)
  std::string base_cfg;     // the rest of the config text shared by every run
  std::string init;      // a whole-model checkpoint: the base the adapters train on

  Fixture() {
    std::string vocab = dir.write("vocab.json", ""), merges = dir.write("merges.txt", "");
    testing::save_byte_tokenizer(vocab, merges);
    model_block = "model { n_layer: 2 n_head: 2 n_embd: 16 vocab_size: 257 block_size: 24 "
                  "dropout: 0 }\n";
    base_cfg = "data { shuffle: false tokenizer_vocab: \"" + vocab +
               "\" tokenizer_merges: \"" + merges + "\" }\nbatch { micro_batch_size: 3 }\n"
               "schedule { decay_steps: 4 warmup_steps: 0 }\noptimizer { lr: 0.01 }\n"
               "sft { train_path: \"" + dir.write("s.jsonl", kPairs) + "\" }\n";
    // The base: a randomly initialised whole model (seed 5), saved with its config.
    config::RunConfig c = resolve({"stage=SFT", "seed=5"}, "max_steps: 1\n");
    ProcessGrid grid(FakeCommunicator::create_world(1)[0], 1, 1, 1);
    train::StageContext ctx(c, grid, Device::cpu());
    std::unique_ptr<models::GPT> model = ctx.make_model(ctx.model_config(), false, "");
    io::Checkpoint ck;
    for (const auto& [name, t] : model->named_parameters())
      ck.tensors["model/" + name] = t.detach();
    ck.meta["config"] = config::to_text(c);
    init = io::save_checkpoint(dir.path() + "/init", ck);
  }

  config::RunConfig resolve(const std::vector<std::string>& sets, const std::string& extra) {
    static int n = 0;
    std::string name = "c";
    name += std::to_string(n++);
    name += ".pbtxt";
    std::string text = model_block;
    text += base_cfg;
    text += extra;
    const std::string path = dir.write(name, text);
    return config::resolve(path, sets, 1, io::model_from_init);
  }

  // A LoRA SFT run of `steps` steps (of a 4-step schedule) from `base` (default: init)
  // checkpointing into `ckpt`, adapting `targets`.
  config::RunConfig lora_sft(int steps, const std::string& ckpt, std::string base = "",
                             const std::string& targets = "\"qkv\", \"proj\", \"fc\"") {
    return resolve({"stage=SFT", "max_steps=" + std::to_string(steps),
                    "init_from=" + (base.empty() ? init : base), "checkpoint.dir=" + ckpt,
                    "checkpoint.interval=0", "eval.interval=0",
                    "output_dir=" + dir.path() + "/out"},
                   "lora { rank: 2 alpha: 4 dropout: 0.1 target_modules: [" + targets + "] }\n");
  }
};

bool is_adapter_key(const std::string& key) {
  return models::is_lora_param(key.substr(key.rfind('/') + 1));
}

TEST(LoraRunTest, SftTrainsOnlyAdaptersSavesThemAloneAndResumesBitwise) {
  Fixture f;
  const std::string full = f.dir.path() + "/full", split = f.dir.path() + "/split";
  train::Trainer whole(f.lora_sft(4, full), nullptr, make_stage);
  const train::TrainSummary s = whole.run();
  ASSERT_EQ(s.losses.size(), 4u);

  // The frozen base is exactly init_from's; the adapters moved (lora_B starts at zero).
  io::CheckpointReader init(f.init, io::LoadOptions::weights_only());
  for (const nn::Parameter& p : whole.model().parameter_list()) {
    if (models::is_lora_param(p.name)) continue;
    EXPECT_EQ(p.tensor.to_vector<float>(), init.read("model/" + p.name).to_vector<float>())
        << p.name;
  }
  EXPECT_NE(whole.model().parameter("blocks.0.mlp.fc.lora_B").to_vector<float>(),
            std::vector<float>(size_t(2 * 64), 0.0f));

  // The checkpoint: adapters (2 blocks x 4 layers x A, B) and their AdamW moments only.
  io::CheckpointReader ck(s.last_checkpoint);
  int model_tensors = 0;
  for (const std::string& key : ck.names()) {
    if (key.rfind("model/", 0) == 0) ++model_tensors;
    if (key.rfind("model/", 0) == 0 || key.rfind("optim/", 0) == 0) {
      EXPECT_TRUE(is_adapter_key(key)) << key;
    }
  }
  EXPECT_EQ(model_tensors, 16);

  // Two steps, then a fresh trainer resumes for the last two: the same losses, bit for bit.
  train::Trainer first(f.lora_sft(2, split), nullptr, make_stage);
  const train::TrainSummary a = first.run();
  train::Trainer second(f.lora_sft(4, split), nullptr, make_stage);
  const train::TrainSummary b = second.run();
  ASSERT_EQ(a.losses.size(), 2u);
  ASSERT_EQ(b.losses.size(), 2u);
  EXPECT_EQ(a.losses[0], s.losses[0]);
  EXPECT_EQ(a.losses[1], s.losses[1]);
  EXPECT_EQ(b.losses[0], s.losses[2]);
  EXPECT_EQ(b.losses[1], s.losses[3]);
  for (const auto& [name, t] : whole.model().named_parameters())
    EXPECT_EQ(t.to_vector<float>(), second.model().parameter(name).to_vector<float>()) << name;
}

// Exports trainer t's checkpoints in `ckpt` to HF and checks the export is a plain model (no
// adapters) whose logits equal the LoRA model's.
void expect_export_matches(train::Trainer& t, const std::string& ckpt, const std::string& out) {
  io::convert_loom_to_hf(ckpt, out);
  io::HfModel hf = io::hf_to_loom(out);
  for (const auto& [name, p] : hf.params) EXPECT_FALSE(models::is_lora_param(name)) << name;
  // Every adapted weight moved away from the frozen base (the adapters trained: B != 0).
  int adapted = 0;
  for (const auto& [name, p] : t.model().named_parameters()) {
    if (name.size() < 7 || name.compare(name.size() - 7, 7, ".lora_A") != 0) continue;
    const std::string w = name.substr(0, name.size() - 7) + ".weight";
    EXPECT_NE(hf.params.at(w).to_vector<float>(), t.model().parameter(w).to_vector<float>()) << w;
    ++adapted;
  }
  EXPECT_GT(adapted, 0);
  models::GPT plain(t.model().config());
  {
    NoGradGuard g;
    for (const auto& [name, p] : plain.named_parameters()) p.detach().copy_(hf.params.at(name));
  }
  std::vector<int64_t> ids = {97, 98, 58, 99, 100, 256, 104, 101, 108, 108, 111, 32};
  Tensor x = Tensor::from_vector<int64_t>(ids, {2, 6});
  NoGradGuard g;
  t.model().eval();
  plain.eval();
  std::vector<float> want = t.model().forward(x).to_vector<float>();
  std::vector<float> got = plain.forward(x).to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i] - want[i])));
  // Tolerance: the export computes x (W + s B A)^T, the LoRA model x W^T + s (x A^T) B^T; both f32
  // with |logits| ~ 1 over two blocks: a few f32 ulps of rounding per product.
  EXPECT_LT(worst, 1e-5);
  // What `loom eval` / `loom generate` load from the checkpoint: the base plus the adapters.
  const std::string step = io::find_latest_checkpoint(ckpt);
  const io::CheckpointReader ck(step, io::LoadOptions::weights_only());
  const config::RunConfig cfg = config::parse_text(ck.meta().at("config"), step);
  models::GPT loaded(train::gpt_config_from(cfg));
  train::load_checkpoint_model(loaded, cfg, ck);
  loaded.eval();
  EXPECT_EQ(loaded.forward(x).to_vector<float>(), want);
}

TEST(LoraRunTest, MergedExportIsAPlainModelWithTheLoraModelsLogits) {
  Fixture f;
  const std::string ckpt = f.dir.path() + "/ck";
  train::Trainer t(f.lora_sft(3, ckpt), nullptr, make_stage);
  t.run();
  expect_export_matches(t, ckpt, f.dir.path() + "/hf");
}

TEST(LoraRunTest, LlamaFromHfWithGroupedQueryTargetsExportsMerged) {
  Fixture f;
  models::GPTConfig c;  // Llama architecture, one kv head, untied head
  c.n_layer = 2;
  c.n_head = 2;
  c.n_kv_head = 1;
  c.n_embd = 16;
  c.vocab_size = 257;
  c.block_size = 24;
  c.norm = models::NormKind::RMSNorm;
  c.position = models::PositionKind::Rope;
  c.mlp = models::MlpKind::SwiGLU;
  c.bias = false;
  c.tie_embeddings = false;
  c.dropout = 0.0;
  models::GPT base(c);
  base.init_weights(9);
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : base.named_parameters()) params[name] = t.detach();
  const std::string hf_dir = f.dir.path() + "/hf_base";
  io::save_hf_model(hf_dir, params, c, 257, {});
  f.model_block = "";  // the shape comes from config.json
  const std::string ckpt = f.dir.path() + "/ck";
  train::Trainer t(f.lora_sft(3, ckpt, "hf:" + hf_dir, "\"q\", \"kv\", \"proj\", \"mlp.fc\""),
                   nullptr, make_stage);
  t.run();
  EXPECT_EQ(t.model().trainable_parameter_list().size(), 2u * 5u * 2u);  // A, B x 5 layers x 2
  expect_export_matches(t, ckpt, f.dir.path() + "/hf");
}

TEST(LoraRunTest, DpoPolicyWithAdaptersStartsAtItsAdapterFreeReference) {
  Fixture f;
  config::RunConfig c = f.resolve(
      {"stage=DPO", "max_steps=2", "init_from=" + f.init, "checkpoint.interval=0",
       "checkpoint.dir=" + f.dir.path() + "/dpo", "eval.interval=0", "optimizer.grad_clip=0",
       "output_dir=" + f.dir.path() + "/out", "batch.micro_batch_size=2",
       "dpo.train_path=" + f.dir.write("p.jsonl", kPrefs)},
      "lora { rank: 2 alpha: 4 target_modules: [\"attn.qkv\", \"mlp.proj\"] }\n");
  train::Trainer t(c, nullptr, make_stage);
  const train::TrainSummary s = t.run();
  ASSERT_EQ(s.losses.size(), 2u);
  // Policy = reference at step 1 (lora_B = 0): log 2 up to f32 rounding of the log-ratios.
  EXPECT_NEAR(s.losses[0], std::log(2.0), 1e-6);
  EXPECT_LT(s.losses[1], s.losses[0]);  // the adapters learned
  for (const nn::Parameter& p : t.model().trainable_parameter_list())
    EXPECT_TRUE(models::is_lora_param(p.name)) << p.name;
}

TEST(LoraRunTest, DpoAfterLoraSftStartsFromTheMergedSftModelAndExportsBothMerged) {
  Fixture f;
  std::string sft_ck;  // its final step directory, as a pipeline passes it on
  {
    train::Trainer sft(f.lora_sft(2, f.dir.path() + "/sft"), nullptr, make_stage);
    sft_ck = sft.run().last_checkpoint;
  }
  const std::string dpo_ck = f.dir.path() + "/dpo";
  config::RunConfig c = f.resolve(
      {"stage=DPO", "max_steps=2", "init_from=" + sft_ck, "checkpoint.interval=0",
       "checkpoint.dir=" + dpo_ck, "eval.interval=0", "output_dir=" + f.dir.path() + "/out",
       "batch.micro_batch_size=2", "dpo.train_path=" + f.dir.write("p.jsonl", kPrefs)},
      "lora { rank: 2 alpha: 4 target_modules: [\"fc\"] }\n");
  train::Trainer t(c, nullptr, make_stage);
  const train::TrainSummary s = t.run();
  ASSERT_EQ(s.losses.size(), 2u);
  // Policy (merged SFT model + fresh adapters) = reference (merged SFT model): log 2 up to f32.
  EXPECT_NEAR(s.losses[0], std::log(2.0), 1e-6);
  // The export merges the DPO adapters into the merged SFT model.
  expect_export_matches(t, dpo_ck, f.dir.path() + "/hf");
}

}  // namespace
}  // namespace loom::rlhf

// Reward model and critic of their own shape (rlhf/ValueModels.h; issue 14, item 3), one
// process. A byte-level policy (2 layers, C 32, 257 tokens) and reward models trained by REWARD
// runs: a wide one (4 layers, C 64, the policy's tokenizer) and one with a byte-level BPE
// tokenizer of its own (C 48). PPO with the wide reward model and a critic initialised from it
// runs 3 iterations; the reward model's scores equal a direct RewardModel forward over the same
// tokens, or over the re-encoded text for the BPE one; a resumed run continues bit for bit;
// mismatches that cannot work are ConfigErrors naming the field and both values.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "config/ConfigLoader.h"
#include "core/autograd/GradMode.h"
#include "data/BpeTrainer.h"
#include "data/ByteLevel.h"
#include "io/Checkpoint.h"
#include "io/CheckpointReader.h"
#include "parallel/comm/FakeCommunicator.h"
#include "rlhf/PreferenceDataset.h"
#include "rlhf/Stages.h"
#include "rlhf/ValueModels.h"
#include "tests/rlhf/RlhfTestUtil.h"
#include "train/Trainer.h"

namespace loom::rlhf {
namespace {

const char* kPairs[][3] = {{"ab:", "cd", "dc"},      {"hi ", "there", "here"},
                           {"x=", "1+1", "11"},      {"q: ", "yes", "no"},
                           {"go ", "left", "right"}, {"say ", "ok", "fine"}};
constexpr const char* kPolicyModel =
    "model { n_layer: 2 n_head: 4 n_embd: 32 vocab_size: 257 block_size: 24 dropout: 0 }\n";
constexpr const char* kWideModel =
    "model { n_layer: 4 n_head: 4 n_embd: 64 vocab_size: 257 block_size: 32 dropout: 0 }\n";

class ValueModelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::save_byte_tokenizer(file("vocab.json"), file("merges.txt"));
    std::vector<std::string> corpus;
    std::string sft, pref, prompts;
    for (const auto& p : kPairs) {
      sft += std::string("{\"prompt\":\"") + p[0] + "\",\"response\":\"" + p[1] + "\"}\n";
      pref += std::string("{\"prompt\":\"") + p[0] + "\",\"chosen\":\"" + p[1] +
              "\",\"rejected\":\"" + p[2] + "\"}\n";
      prompts += std::string("{\"prompt\":\"") + p[0] + "\"}\n";
      for (int k = 0; k < 3; ++k) corpus.push_back(std::string(p[0]) + p[1] + " " + p[2]);
    }
    dir_.write("sft.jsonl", sft);
    dir_.write("pref.jsonl", pref);
    dir_.write("prompts.jsonl", prompts);
    // The reward model's own tokenizer: 256 bytes, up to 20 merges of the data's text, EOT.
    data::save_bpe(data::train_bpe_texts(corpus, {.vocab_size = 277, .min_frequency = 2}),
                   file("rm_vocab.json"), file("rm_merges.txt"));
    rm_tok_ = std::make_unique<data::Tokenizer>(
        data::Tokenizer::from_files(file("rm_vocab.json"), file("rm_merges.txt")));
    policy_init_ = run(base("SFT", 1, "init", kPolicyModel)).last_checkpoint;
    wide_ = run(base("REWARD", 3, "wide", kWideModel)).last_checkpoint;
    bpe_ = run(base("REWARD", 3, "bpe",
                    "model { n_layer: 2 n_head: 4 n_embd: 48 vocab_size: 277 block_size: 32 "
                    "dropout: 0 }\n",
                    "rm_vocab.json", "rm_merges.txt"))
               .last_checkpoint;
  }

  std::string file(const std::string& name) const { return dir_.path() + "/" + name; }

  // A run's config: `stage` for `steps` steps of `model` into <dir>/<run>, with the tokenizer
  // files given.
  std::string base(const std::string& stage, int steps, const std::string& run,
                   const std::string& model, const std::string& vocab = "vocab.json",
                   const std::string& merges = "merges.txt") const {
    return "name: \"" + run + "\"\nstage: " + stage + "\nseed: 5\nmax_steps: " +
           std::to_string(steps) + "\noutput_dir: \"" + file(run) + "\"\n" + model +
           "data { seq_len: 24 tokenizer_vocab: \"" + file(vocab) + "\" tokenizer_merges: \"" +
           file(merges) + "\" }\noptimizer { lr: 1e-3 }\nschedule { warmup_steps: 0 }\n"
           "batch { micro_batch_size: 2 global_batch_size: 2 }\neval { interval: 0 }\n"
           "checkpoint { interval: 0 resume: \"none\" }\n"
           "logging { progress: OFF tensorboard: false }\n"
           "sft { train_path: \"" + file("sft.jsonl") + "\" }\n"
           "reward { train_path: \"" + file("pref.jsonl") + "\" }\n";
  }

  // A PPO run's config over the policy with reward model `rm` (and `extra` ppo fields).
  std::string ppo(const std::string& run, const std::string& rm, const std::string& extra = "") {
    return base("PPO", 3, run, kPolicyModel) + "init_from: \"" + policy_init_ + "\"\n" +
           "ppo { prompts_path: \"" + file("prompts.jsonl") + "\" reward_model: \"" + rm +
           "\" truncated_responses: KEEP epochs: 2 mini_batches: 2 " + extra +
           " rollout { batch_size: 2 max_new_tokens: 6 } }\n";
  }

  config::RunConfig resolve(const std::string& text, std::vector<std::string> sets = {},
                            int world = 1) {
    const std::string path = dir_.write("run_" + std::to_string(runs_++) + ".pbtxt", text);
    return config::resolve(path, sets, world);
  }

  train::TrainSummary run(const std::string& text, std::vector<std::string> sets = {}) {
    train::Trainer t(resolve(text, std::move(sets)), nullptr, make_stage);
    return t.run();
  }

  // A checkpoint that records only a config of `model` (enough to read its shape) and `tok`.
  std::string shape_only(const std::string& name, const std::string& model,
                         const io::TokenizerFiles& tok = {}) {
    io::Checkpoint ck;
    ck.tokenizer = tok;
    ck.meta["config"] =
        config::to_text(resolve(base("REWARD", 1, name, model), {"data.seq_len=8"}));
    return io::save_checkpoint(file(name), ck);
  }

  testing::TempDir dir_;
  std::unique_ptr<data::Tokenizer> rm_tok_;
  std::string policy_init_, wide_, bpe_;
  int runs_ = 0;
};

// metrics.jsonl of a run: each step's value of `key`.
std::vector<double> metric(const std::string& run_dir, const std::string& key) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(j[key].get<double>());
  }
  return out;
}

// A RewardModel of the checkpoint's own config with its weights, built without ValueModels.
std::unique_ptr<models::RewardModel> load_direct(const std::string& dir) {
  const io::CheckpointReader ck(dir, io::LoadOptions::weights_only());
  const config::RunConfig cfg = config::parse_text(ck.meta().at("config"), dir);
  auto m = std::make_unique<models::RewardModel>(train::gpt_config_from(cfg));
  train::load_pieces(*m, ck, "model/", {});
  m->eval();
  return m;
}

double direct_score(models::RewardModel& m, const std::vector<int64_t>& ids) {
  NoGradGuard g;
  const int64_t T = int64_t(ids.size());
  return m.score(Tensor::from_vector<int64_t>(ids, {1, T}),
                 Tensor::from_vector<int64_t>({T - 1}, {1}))
      .item();
}

// Policy-side rollout rows (byte ids) of prompt + response (+ EOT when eos).
struct Rows {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int64_t>> responses;
};
Rows byte_rows(const std::vector<SampleText>& texts) {
  Rows r;
  for (const SampleText& t : texts) {
    r.prompts.push_back(testing::bytes_of(t.prompt));
    std::vector<int64_t> resp(t.response.begin(), t.response.end());
    for (int64_t& c : resp) c = int64_t(static_cast<unsigned char>(c));
    if (t.eos) resp.push_back(256);
    r.responses.push_back(resp);
  }
  return r;
}

struct Fixture {
  explicit Fixture(const config::RunConfig& c)
      : cfg(c), grid(FakeCommunicator::create_world(1)[0], 1, 1, 1), ctx(cfg, grid, Device::cpu()),
        tok(stage_tokenizer(ctx)), policy(ctx.model_config()),
        actor(std::make_unique<models::GPT>(policy)) {
    actor->init_weights(3);
    actor->eval();
  }
  Rollout rollout(const std::vector<SampleText>& texts) {
    const Rows rows = byte_rows(texts);
    return build_rollout({*actor, *actor, nullptr, grid}, rows.prompts, rows.responses, 256, 1.0,
                         Device::cpu());
  }
  config::RunConfig cfg;
  ProcessGrid grid;
  train::StageContext ctx;
  const data::Tokenizer& tok;
  models::GPTConfig policy;
  std::unique_ptr<models::GPT> actor;
};

const std::vector<SampleText> kTexts = {{"hi ", "there", true}, {"go ", "lef\xc3", false}};

TEST_F(ValueModelsTest, WideRewardModelAndACriticFromItTrainAndScoreInPpo) {
  const train::TrainSummary s = run(ppo("ppo_wide", wide_));
  ASSERT_EQ(s.losses.size(), 3u);
  // The critic (ppo.critic_init defaults to ppo.reward_model) trains: its value loss is finite
  // and moves from iteration to iteration.
  const std::vector<double> vl = metric(file("ppo_wide"), "value_loss");
  ASSERT_EQ(vl.size(), 3u);
  for (double v : vl) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(vl[0] != vl[1] || vl[1] != vl[2]);
  const std::vector<double> rm = metric(file("ppo_wide"), "reward/reward_model");
  ASSERT_EQ(rm.size(), 3u);
  for (double v : rm) EXPECT_TRUE(std::isfinite(v));
  // The checkpointed critic has the reward model's width, not the policy's.
  const io::CheckpointReader ck(s.last_checkpoint);
  EXPECT_TRUE(ck.info("critic/blocks.3.ln_1.weight").has_value());  // 4 layers
  EXPECT_EQ(ck.info("critic/wte.weight")->shape.back(), 64);
  EXPECT_EQ(ck.info("model/wte.weight")->shape.back(), 32);
  // A run stopped after iteration 2 resumes (the wide critic and its optimizer state from the
  // checkpoint) to the uninterrupted run's iteration 3, bit for bit: sampling is seeded by
  // (seed, step, row) and the checkpoint holds every other state.
  ASSERT_EQ(run(ppo("ppo_wide_resumed", wide_), {"max_steps=2", "schedule.decay_steps=3"})
                .losses.size(),
            2u);
  const train::TrainSummary resumed =
      run(ppo("ppo_wide_resumed", wide_), {"checkpoint.resume=auto"});
  ASSERT_EQ(resumed.losses.size(), 1u);
  EXPECT_EQ(resumed.losses[0], s.losses[2]);

  // Its scores of policy rows are a direct forward of the wide model over the same tokens.
  Fixture f(resolve(ppo("scorer", wide_)));
  RewardScorer scorer(f.ctx, f.tok, f.policy, wide_);
  EXPECT_FALSE(scorer.retokenizes());
  EXPECT_EQ(scorer.model().config().n_embd, 64);
  EXPECT_EQ(scorer.model().config().n_layer, 4);
  const std::vector<double> got = scorer.score(f.rollout(kTexts), {}, f.grid, Device::cpu());
  auto direct = load_direct(wide_);
  const Rows rows = byte_rows(kTexts);
  for (size_t i = 0; i < kTexts.size(); ++i) {
    std::vector<int64_t> ids(rows.prompts[i].begin(), rows.prompts[i].end());
    ids.insert(ids.end(), rows.responses[i].begin(), rows.responses[i].end());
    // f32 forwards over another batch shape (padding, row count): reduction order only.
    EXPECT_NEAR(got[i], direct_score(*direct, ids), 1e-5) << i;
  }
}

TEST_F(ValueModelsTest, RewardModelWithItsOwnTokenizerScoresTheReencodedText) {
  Fixture f(resolve(ppo("scorer", bpe_, "critic_init: \"" + policy_init_ + "\"")));
  RewardScorer scorer(f.ctx, f.tok, f.policy, bpe_);
  ASSERT_TRUE(scorer.retokenizes());
  const std::vector<std::vector<int64_t>> enc = scorer.encode(kTexts);
  // Row 0 as a REWARD run with the reward model's tokenizer encodes the pair (prompt, chosen):
  // prompt tokens, response tokens, EOT.
  const std::string pair = dir_.write("one.jsonl", "{\"prompt\":\"hi \",\"chosen\":\"there\","
                                                   "\"rejected\":\"x\"}\n");
  DatasetOptions o;
  o.seq_len = 32;
  o.chat_template = template_named(f.cfg.sft().template_());
  const PreferenceExample ex = load_preference_jsonl(pair, *rm_tok_, o).examples.at(0);
  std::vector<int64_t> want0(ex.prompt.begin(), ex.prompt.end());
  want0.insert(want0.end(), ex.chosen.begin(), ex.chosen.end());
  EXPECT_EQ(enc[0], want0);
  EXPECT_LT(enc[0].size(), 3u + 5u + 1u);  // the BPE merges shorten the bytes of "hi there"
  // Row 1 ends without EOS (and inside a UTF-8 character): its tokens, no EOT.
  std::vector<int64_t> want1;
  for (int32_t id : rm_tok_->encode("go ")) want1.push_back(id);
  for (int32_t id : rm_tok_->encode("lef\xc3")) want1.push_back(id);
  EXPECT_EQ(enc[1], want1);
  // A text longer than the reward model's block_size (32) keeps its last 32 tokens.
  const std::string long_response(80, 'z');
  std::vector<int64_t> full;
  for (int32_t id : rm_tok_->encode("go ")) full.push_back(id);
  for (int32_t id : rm_tok_->encode(long_response)) full.push_back(id);
  full.push_back(*rm_tok_->eot_id());
  ASSERT_GT(full.size(), 32u);
  EXPECT_EQ(scorer.encode({{"go ", long_response, true}})[0],
            std::vector<int64_t>(full.end() - 32, full.end()));
  const std::vector<double> got = scorer.score(f.rollout(kTexts), kTexts, f.grid, Device::cpu());
  auto direct = load_direct(bpe_);
  EXPECT_NEAR(got[0], direct_score(*direct, want0), 1e-5);  // as above: reduction order only
  EXPECT_NEAR(got[1], direct_score(*direct, want1), 1e-5);

  // PPO with it (the critic from the policy's checkpoint) runs and scores.
  const train::TrainSummary s =
      run(ppo("ppo_bpe", bpe_, "critic_init: \"" + policy_init_ + "\""));
  ASSERT_EQ(s.losses.size(), 3u);
  for (double v : metric(file("ppo_bpe"), "reward/reward_model")) EXPECT_TRUE(std::isfinite(v));
}

TEST_F(ValueModelsTest, AnHfSourceHasTheShapeOfItsConfigJson) {
  Fixture f(resolve(ppo("hf", wide_)));
  const std::string hf = std::string(LOOM_SOURCE_DIR) + "/tests/golden/hf/gpt2_tied_v61";
  const SourceModel s = read_source_model(f.cfg, "ppo.reward_model", "hf:" + hf, f.policy);
  EXPECT_TRUE(s.own_shape);
  EXPECT_EQ(s.tokenizer, nullptr);  // the directory holds no tokenizer files
  // config.json: n_layer 2, n_head 4, n_embd 32, n_positions 16, vocab_size 61.
  EXPECT_EQ(s.config.n_layer, 2);
  EXPECT_EQ(s.config.n_head, 4);
  EXPECT_EQ(s.config.n_embd, 32);
  EXPECT_EQ(s.config.block_size, 16);
  EXPECT_EQ(s.config.real_vocab_size, 61);
  EXPECT_GE(s.config.vocab_size, 61);
  // A source that is "" keeps the policy's shape.
  EXPECT_FALSE(read_source_model(f.cfg, "ppo.critic_init", "", f.policy).own_shape);
}

template <class F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

TEST_F(ValueModelsTest, MismatchesThatCannotWorkAreConfigErrorsNamingTheFieldAndValues) {
  Fixture f(resolve(ppo("errors", bpe_, "critic_init: \"" + policy_init_ + "\"")));
  // A critic from the reward model of another tokenizer: values are per policy token.
  std::string e = config_error([&] { make_critic(f.ctx, f.tok, f.policy, bpe_); });
  EXPECT_NE(e.find("ppo.critic_init=" + bpe_), std::string::npos) << e;
  EXPECT_NE(e.find("must share the policy's tokenizer"), std::string::npos) << e;
  // ... also as PPO's default critic (ppo.critic_init = ppo.reward_model).
  e = config_error([&] { run(ppo("ppo_bpe_critic", bpe_)); });
  EXPECT_NE(e.find("ppo.critic_init"), std::string::npos) << e;
  // Without a tokenizer of its own, another vocabulary cannot be read.
  const std::string other_vocab = shape_only(
      "vocab300", "model { n_layer: 2 n_head: 4 n_embd: 32 vocab_size: 300 block_size: 32 }\n");
  e = config_error([&] { RewardScorer r(f.ctx, f.tok, f.policy, other_vocab); });
  EXPECT_NE(e.find("ppo.reward_model=" + other_vocab + ": vocab_size=300 but the policy's "
                   "model.vocab_size=257"), std::string::npos) << e;
  // Another tokenizer without an EOT cannot end the re-encoded responses.
  data::BpeModel no_eot;
  for (int i = 0; i < 256; ++i)
    no_eot.tokens.push_back(data::bytes_to_token(std::string(1, char(i))));
  data::save_bpe(no_eot, file("no_eot_vocab.json"), file("no_eot_merges.txt"));
  io::TokenizerFiles no_eot_files;
  no_eot_files.vocab_json = file("no_eot_vocab.json");
  no_eot_files.merges_txt = file("no_eot_merges.txt");
  const std::string no_eot_rm = shape_only("no_eot", kPolicyModel, no_eot_files);
  e = config_error([&] { RewardScorer r(f.ctx, f.tok, f.policy, no_eot_rm); });
  EXPECT_NE(e.find("ppo.reward_model=" + no_eot_rm + ": its tokenizer"), std::string::npos) << e;
  EXPECT_NE(e.find("has no <|endoftext|> token"), std::string::npos) << e;
  // A shorter context than the policy's, where it reads the rollout's tokens.
  const std::string short_ctx = shape_only(
      "short", "model { n_layer: 2 n_head: 4 n_embd: 32 vocab_size: 257 block_size: 16 }\n");
  e = config_error([&] { RewardScorer r(f.ctx, f.tok, f.policy, short_ctx); });
  EXPECT_NE(e.find("block_size=16 but the policy's model.block_size=24"), std::string::npos) << e;
  e = config_error([&] { make_critic(f.ctx, f.tok, f.policy, short_ctx); });
  EXPECT_NE(e.find("ppo.critic_init=" + short_ctx + ": block_size=16"), std::string::npos) << e;
  // A shape that does not split over the run's TP x PP grid.
  const std::string odd = shape_only(
      "odd", "model { n_layer: 3 n_head: 3 n_embd: 48 vocab_size: 257 block_size: 32 }\n");
  const config::RunConfig grid4 = resolve(
      ppo("grid4", wide_), {"parallel.tp=2", "parallel.pp=2", "batch.micro_batch_size=1"}, 4);
  e = config_error([&] { read_source_model(grid4, "ppo.reward_model", odd, f.policy); });
  EXPECT_NE(e.find("ppo.reward_model=" + odd), std::string::npos) << e;
  EXPECT_NE(e.find("model.n_head=3: expected a multiple of parallel.tp=2"), std::string::npos) << e;
  EXPECT_NE(e.find("model.n_layer=3: expected a multiple of parallel.pp=2"), std::string::npos)
      << e;
  // The wide model splits over that grid.
  EXPECT_NO_THROW(read_source_model(grid4, "ppo.reward_model", wide_, f.policy));
}

}  // namespace
}  // namespace loom::rlhf

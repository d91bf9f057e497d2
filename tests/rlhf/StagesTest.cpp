// The SFT / REWARD / DPO stages (rlhf/Stages.h) against direct computations, each run as the
// trainer runs it (one process: a 1 x 1 x 1 grid, the policy's Learner, one stage step at lr 0 so
// the weights stay what the direct computation reads): the SFT loss is the mean next-token cross
// entropy over response tokens only (recomputed here from the model's logits and our own
// tokenisation), the reward loss is -log sigmoid(r_c - r_r) at the last real token, DPO with
// the policy as its own reference gives exactly log 2 (cDPO too, IPO 1/(4 beta^2)), and SimPO's
// loss and held-out accuracy / margin match a direct computation over the real token ids.
#include <cmath>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "data/BpeTrainer.h"
#include "config/ConfigLoader.h"
#include "models/RewardModel.h"
#include "io/Checkpoint.h"
#include "parallel/ProcessGroups.h"
#include "parallel/comm/FakeCommunicator.h"
#include "rlhf/Stages.h"
#include "tests/rlhf/RlhfTestUtil.h"

namespace loom::rlhf {
namespace {

using testing::bytes_of;

struct Fixture {
  testing::TempDir dir;
  std::string cfg_path;
  // Byte tokenizer files + the config (stage and extra lines given).
  explicit Fixture(const std::string& stage_lines) {
    std::string vocab = dir.write("vocab.json", ""), merges = dir.write("merges.txt", "");
    testing::save_byte_tokenizer(vocab, merges);
    cfg_path = dir.write("c.pbtxt", "max_steps: 1\nmodel { n_layer: 1 n_head: 2 n_embd: 16 "
                                    "vocab_size: 257 block_size: 24 dropout: 0 }\n"
                                    "data { shuffle: false tokenizer_vocab: \"" + vocab +
                                        "\" tokenizer_merges: \"" + merges + "\" }\n" +
                                        stage_lines);
  }
  config::RunConfig resolve(const std::vector<std::string>& sets = {}) {
    return config::resolve(cfg_path, sets, 1);
  }
};

// One process running cfg's stage as the trainer would.
struct StageRun {
  explicit StageRun(const config::RunConfig& c)
      : cfg(c),
        grid(FakeCommunicator::create_world(1)[0], 1, 1, 1),
        ctx(cfg, grid, Device::cpu()),
        policy(ctx.make_learner(
            ctx.make_model(ctx.model_config(), cfg.stage() == config::RunConfig::REWARD, ""))),
        stage(make_stage(ctx, *policy)) {}
  // One stage step at lr 0: the loss of the current weights, which the step leaves unchanged.
  train::StepResult step() { return stage->run_step(1, 0.0, *policy); }
  models::GPT& model() { return policy->model(); }

  config::RunConfig cfg;
  ProcessGrid grid;
  train::StageContext ctx;
  std::unique_ptr<train::Learner> policy;
  std::unique_ptr<train::Stage> stage;
};

const std::vector<std::pair<std::string, std::string>> kPairs = {
    {"ab:", "cd"}, {"hello ", "world"}, {"x", "yz!"}};

// Mean over response positions of -log softmax(logits of the position before), in double, from
// our own layout: bytes(prompt) + bytes(response) + EOT (256), padded with EOT.
double direct_sft_loss(models::GPT& model, bool mask_prompt) {
  const int64_t T = 24, B = int64_t(kPairs.size()), V = 257;
  std::vector<int64_t> ids(size_t(B * T), 256);
  std::vector<std::pair<int64_t, int64_t>> lens;  // (prompt, total)
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> seq = bytes_of(kPairs[size_t(b)].first);
    const int64_t p = int64_t(seq.size());
    for (int32_t t : bytes_of(kPairs[size_t(b)].second)) seq.push_back(t);
    seq.push_back(256);
    for (size_t t = 0; t < seq.size(); ++t) ids[size_t(b * T) + t] = seq[t];
    lens.emplace_back(p, int64_t(seq.size()));
  }
  NoGradGuard g;
  std::vector<float> logits = model.forward(Tensor::from_vector(ids, {B, T})).to_vector<float>();
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t first = mask_prompt ? lens[size_t(b)].first : 1;
    for (int64_t t = first; t < lens[size_t(b)].second; ++t) {  // predict token t from t-1
      const float* row = &logits[size_t((b * T + t - 1) * V)];
      double mx = row[0], z = 0.0;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
      for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
      sum += -(double(row[ids[size_t(b * T + t)]]) - mx - std::log(z));
      ++count;
    }
  }
  return sum / double(count);
}

std::string pairs_jsonl(bool preference) {
  std::string s;
  for (const auto& [p, r] : kPairs)
    s += preference ? "{\"prompt\":\"" + p + "\",\"chosen\":\"" + r + "\",\"rejected\":\"" + r +
                          r + "\"}\n"
                    : "{\"prompt\":\"" + p + "\",\"response\":\"" + r + "\"}\n";
  return s;
}

TEST(StagesTest, SftLossIsTheMeanOverResponseTokensOnly) {
  for (bool mask_prompt : {true, false}) {
    Fixture f("stage: SFT\nbatch { micro_batch_size: 3 }\n");
    std::string path = f.dir.write("sft.jsonl", pairs_jsonl(false));
    const std::string mask = mask_prompt ? "true" : "false";
    StageRun run(f.resolve({"sft.train_path=" + path, "sft.mask_prompt=" + mask}));
    double got = run.step().loss;
    double want = direct_sft_loss(run.model(), mask_prompt);
    // f32 logits and f32 log-softmax inside cross_entropy vs our f64 reduction of the same f32
    // logits: a few ulps of the ~log(257) = 5.5 per-token values.
    EXPECT_NEAR(got, want, 1e-5 * want) << "mask_prompt " << mask_prompt;
  }
}

TEST(StagesTest, SftPackingKeepsTheLossOnEachDocumentsResponse) {
  // The three examples (6 + 12 + 5 = 23 tokens with EOTs) pack into one row of 24.
  Fixture f("stage: SFT\nsft { packing: true }\nbatch { micro_batch_size: 1 }\n");
  std::string path = f.dir.write("sft.jsonl", pairs_jsonl(false));
  StageRun run(f.resolve({"sft.train_path=" + path}));
  double got = run.step().loss;
  models::GPT& model = run.model();
  // Direct: the concatenated row; targets are the response tokens of each document (never the
  // next document's first token, never padding).
  std::vector<int64_t> ids;
  std::vector<bool> is_target;  // is_target[t]: position t-1 predicts token t with loss
  for (const auto& [p, r] : kPairs) {
    for (int32_t t : bytes_of(p)) ids.push_back(t), is_target.push_back(false);
    for (int32_t t : bytes_of(r)) ids.push_back(t), is_target.push_back(true);
    ids.push_back(256), is_target.push_back(true);
  }
  ASSERT_EQ(ids.size(), 23u);
  ids.push_back(256), is_target.push_back(false);  // padding
  NoGradGuard g;
  std::vector<float> logits = model.forward(Tensor::from_vector(ids, {1, 24})).to_vector<float>();
  double sum = 0.0;
  int count = 0;
  for (size_t t = 1; t < ids.size(); ++t) {
    if (!is_target[t]) continue;
    const float* row = &logits[(t - 1) * 257];
    double mx = row[0], z = 0.0;
    for (int v = 0; v < 257; ++v) mx = std::max(mx, double(row[v]));
    for (int v = 0; v < 257; ++v) z += std::exp(double(row[v]) - mx);
    sum += -(double(row[ids[t]]) - mx - std::log(z));
    ++count;
  }
  EXPECT_EQ(count, 2 + 1 + 5 + 1 + 3 + 1);  // response bytes + EOT per document
  // Same f32-vs-f64 reduction argument as the padded case.
  EXPECT_NEAR(got, sum / count, 1e-5 * sum / count);
}

TEST(StagesTest, RewardLossReadsTheLastRealToken) {
  Fixture f("stage: REWARD\nbatch { micro_batch_size: 3 }\n");
  std::string path = f.dir.write("pref.jsonl", pairs_jsonl(true));
  StageRun run(f.resolve({"reward.train_path=" + path}));
  train::StepResult st = run.step();
  auto& model = dynamic_cast<models::RewardModel&>(run.model());
  // Direct: score each full sequence (no padding) at its last token (the EOT).
  double want = 0.0;
  NoGradGuard g;
  for (const auto& [p, r] : kPairs) {
    auto score = [&](const std::string& resp) {
      std::vector<int64_t> ids;
      for (int32_t t : bytes_of(p + resp)) ids.push_back(t);
      ids.push_back(256);
      const int64_t n = int64_t(ids.size());
      return double(model.values(Tensor::from_vector(ids, {1, n})).to_vector<float>().back());
    };
    want += std::log1p(std::exp(-(score(r) - score(r + r)))) / double(kPairs.size());
  }
  // Causal attention: padding after the last token cannot change its value; f32 rounding of the
  // (B,T) vs (1,n) matmuls differs by a few ulps of O(1) scores.
  EXPECT_NEAR(st.loss, want, 1e-5);
  ASSERT_EQ(st.metrics.size(), 2u);
  EXPECT_EQ(st.metrics[0].first, "accuracy");
}

TEST(StagesTest, DpoAgainstItselfIsLogTwo) {
  // init_from a checkpoint of some model: the policy and the reference (dpo.reference defaults
  // to init_from) both load it.
  Fixture f("stage: DPO\nbatch { micro_batch_size: 3 }\n");
  std::string path = f.dir.write("pref.jsonl", pairs_jsonl(true));
  std::string init;
  {
    StageRun sft(f.resolve({"stage=SFT", "sft.train_path=" + f.dir.write("s.jsonl", pairs_jsonl(false))}));
    io::Checkpoint ck;
    for (const auto& [name, t] : sft.model().named_parameters()) ck.tensors["model/" + name] = t.detach();
    init = io::save_checkpoint(f.dir.path() + "/init", ck);
  }
  StageRun run(f.resolve({"dpo.train_path=" + path, "optimizer.grad_clip=0", "init_from=" + init}));
  std::vector<Tensor> before;
  for (const Tensor& p : run.model().parameters()) before.push_back(p.detach().clone());
  train::StepResult st = run.stage->run_step(1, 1e-3, *run.policy);
  // The policy equals the reference: h_c = h_r = 0, loss = log 2 up to f32 rounding.
  EXPECT_NEAR(st.loss, std::log(2.0), 1e-6);
  // The step had gradients: the policy moved.
  bool moved = false;
  std::vector<Tensor> after = run.model().parameters();
  for (size_t i = 0; i < after.size(); ++i)
    moved = moved || after[i].to_vector<float>() != before[i].to_vector<float>();
  EXPECT_TRUE(moved);
}

// The init checkpoint of the DPO tests: a fresh model of the fixture's config.
std::string init_checkpoint(Fixture& f, const std::vector<std::string>& sets = {}) {
  std::vector<std::string> all = sets;
  all.push_back("stage=SFT");
  all.push_back("sft.train_path=" + f.dir.write("s.jsonl", pairs_jsonl(false)));
  StageRun sft(f.resolve(all));
  io::Checkpoint ck;
  for (const auto& [name, t] : sft.model().named_parameters()) ck.tensors["model/" + name] = t.detach();
  return io::save_checkpoint(f.dir.path() + "/init", ck);
}

TEST(StagesTest, DpoVariantsAgainstTheirOwnReferenceMatchClosedForms) {
  // Policy == reference: every margin h_c - h_r is 0, so DPO and cDPO give log 2 (whatever the
  // smoothing) and IPO (0 - 1/(2 beta))^2 = 1/(4 beta^2).
  Fixture f("stage: DPO\nbatch { micro_batch_size: 3 }\n");
  const std::string path = f.dir.write("pref.jsonl", pairs_jsonl(true));
  const std::string init = init_checkpoint(f);
  const std::vector<std::pair<std::vector<std::string>, double>> cases = {
      {{}, std::log(2.0)},
      {{"dpo.loss_type=cdpo", "dpo.label_smoothing=0.2"}, std::log(2.0)},
      {{"dpo.loss_type=ipo", "dpo.beta=0.5"}, 1.0},
  };
  for (const auto& [sets, want] : cases) {
    std::vector<std::string> all = {"dpo.train_path=" + path, "init_from=" + init};
    all.insert(all.end(), sets.begin(), sets.end());
    StageRun run(f.resolve(all));
    // f32 sequence log-probs of identical weights cancel exactly; the loss is one f32 formula.
    EXPECT_NEAR(run.step().loss, want, 1e-6) << ::testing::PrintToString(sets);
  }
}

// Sequence log-prob of `response` + EOT after `prompt` over the first V logits (f64 from the
// model's f32 logits).
double direct_logprob(models::GPT& model, const std::string& prompt, const std::string& response,
                      int64_t V) {
  std::vector<int64_t> ids;
  for (int32_t t : bytes_of(prompt + response)) ids.push_back(t);
  ids.push_back(256);
  const int64_t n = int64_t(ids.size()), P = int64_t(prompt.size());
  NoGradGuard g;
  Tensor logits = model.forward(Tensor::from_vector(ids, {1, n}));
  const int64_t cols = logits.size(2);
  std::vector<float> l = logits.to_vector<float>();
  double lp = 0.0;
  for (int64_t t = P; t < n; ++t) {  // position t-1 predicts token t
    const float* row = &l[size_t((t - 1) * cols)];
    double mx = row[0], z = 0.0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
    lp += double(row[ids[size_t(t)]]) - mx - std::log(z);
  }
  return lp;
}

TEST(StagesTest, SimpoUsesRealTokenIdsAndItsValidationReportsAccuracyAndMargin) {
  // A model with 300 rows for a 257-token tokenizer: the 43 padded rows must not count.
  Fixture f("stage: DPO\nbatch { micro_batch_size: 3 }\n");
  const std::string path = f.dir.write("pref.jsonl", pairs_jsonl(true));
  // Four held-out pairs in batches of 3: a short last batch, weighted by its one pair.
  const std::string val = f.dir.write(
      "val.jsonl", pairs_jsonl(true) + "{\"prompt\":\"q\",\"chosen\":\"zz\",\"rejected\":\"z\"}\n");
  const double beta = 2.0, gamma = 0.5;
  StageRun run(f.resolve({"dpo.train_path=" + path, "dpo.val_path=" + val,
                          "dpo.loss_type=simpo", "dpo.simpo_gamma=0.5", "model.vocab_size=300"}));
  // Rows 257..299 of the tied embedding scaled up, so their logits vary from position to position
  // (for a fresh model they would shift every log-prob by about the same log(300/257), which the
  // length normalisation cancels).
  Tensor wte = run.model().parameter("wte.weight");
  {
    NoGradGuard g;
    wte.narrow(0, 257, 43).copy_(wte.narrow(0, 257, 43) * 300.0);
  }
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> pairs;
  for (const auto& [p, r] : kPairs) pairs.push_back({p, {r, r + r}});
  double loss = 0.0, full_loss = 0.0;
  for (const auto& [p, cr] : pairs) {
    const double lc = double(cr.first.size() + 1), lr = double(cr.second.size() + 1);
    auto z = [&](int64_t V) {
      return beta * (direct_logprob(run.model(), p, cr.first, V) / lc -
                     direct_logprob(run.model(), p, cr.second, V) / lr) - gamma;
    };
    loss += std::log1p(std::exp(-z(257))) / 3.0;
    full_loss += std::log1p(std::exp(-z(300))) / 3.0;
  }
  pairs.push_back({"q", {"zz", "z"}});
  double acc = 0.0, margin = 0.0;
  for (const auto& [p, cr] : pairs) {
    const double m = beta * (direct_logprob(run.model(), p, cr.first, 257) /
                                 double(cr.first.size() + 1) -
                             direct_logprob(run.model(), p, cr.second, 257) /
                                 double(cr.second.size() + 1));
    acc += (m > 0 ? 1.0 : 0.0) / 4.0;
    margin += m / 4.0;
  }
  run.model().eval();
  train::Metrics m = run.stage->evaluate(*run.policy, 10);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].first, "val_loss");
  EXPECT_EQ(m[1].first, "val_accuracy");
  EXPECT_DOUBLE_EQ(m[1].second, acc);
  EXPECT_EQ(m[2].first, "val_margin");
  // f32 log-probs of (B,T) vs (1,n) forwards: a few ulps of O(10) sums, divided by lengths.
  EXPECT_NEAR(m[2].second, margin, 1e-4);
  run.model().train();
  const double got = run.step().loss;
  EXPECT_NEAR(got, loss, 1e-4);  // as above, through softplus (slope < 1)
  EXPECT_GT(std::abs(got - full_loss), 1e-3);  // the padded rows would change the loss
}

TEST(StagesTest, UnknownTemplateIsAConfigError) {
  EXPECT_THROW(template_named("fancy"), ConfigError);
  EXPECT_EQ(template_named("plain").user, "{content}");
}

}  // namespace
}  // namespace loom::rlhf

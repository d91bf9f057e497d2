// Tensor + pipeline + data parallelism through the Trainer on MPI ranks (issue 4, TESTPLAN R-3,
// each layout trains a tiny GPT (4 layers, 4 heads, fp32, no dropout, no biases) for 20
// steps and must match the single-process run with the same global batch: every step's loss and
// every final parameter piece within 1e-5 relative. Checkpoints saved under TP=2 x PP=2 resume
// under one process and under DP=2 x PP=2; DP=2 x TP=2 x PP=2 resumes bitwise. Tiny
// Llama-architecture models (GQA split and MQA replicated over TP, q/k/v biases, untied head)
// match one process for 10 steps under TP=2, PP=2 and TP=2 x PP=2, and so do Mistral and Qwen2
// models loaded from their HF directories (issue 12).
// The executable is registered once per world size with the tests for that size (see
// tests/parallel/CMakeLists.txt); each test asserts the world size it needs.
#include <gtest/gtest.h>

#include "core/nn/ShardSpec.h"
#include "io/HfSource.h"
#include "tests/support/Golden.h"
#include "tests/parallel/TrainerMpiSupport.h"

namespace loom {
namespace {

using namespace loom::test;

// 8 sequences per step whatever the layout: micro-batch 2, so 4 / dp micro-batches per rank
// (issue 4: PP=2 with 1F1B over 4 micro-batches).
std::string write_layout_config(const SharedDir& dir) {
  std::string path = dir.file("mp.pbtxt");
  if (world_rank() == 0) {
    // No biases: see TrainerMpiSupport.h (zero-gradient QKV key bias amplified by AdamW).
    std::ofstream(path)
        << "name: \"mp\"\nseed: 7\nmax_steps: 20\noutput_dir: \"" << dir.file("run") << "\"\n"
        << "model { n_layer: 4 n_head: 4 n_embd: 32 vocab_size: 64 block_size: 16 dropout: 0 "
           "bias: false }\n"
        << "data { train_path: \"" << dir.file("train.h5") << "\" seq_len: 16 }\n"
        << "optimizer { lr: 3e-3 grad_clip: 1.0 weight_decay: 0.1 }\n"
        << "schedule { warmup_steps: 3 decay_steps: 20 }\n"
        << "batch { micro_batch_size: 2 global_batch_size: 8 }\n"
        << "eval { interval: 0 }\ncheckpoint { interval: 0 resume: \"none\" }\n"
        << "logging { progress: OFF tensorboard: false }\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

// A run's losses and this rank's parameter pieces (the whole model for one process).
struct LayoutRun {
  std::vector<double> losses;
  std::vector<std::pair<std::string, Tensor>> pieces;
  std::vector<ShardSpec> specs;  // empty for one process
  std::string checkpoint;
};

LayoutRun run_layout(const std::string& cfg_path, std::vector<std::string> sets, bool distributed) {
  config::RunConfig cfg =
      config::resolve(cfg_path, sets, distributed ? world_size() : 1, io::model_from_init);
  std::shared_ptr<Communicator> comm;
  if (distributed) comm = MpiCommunicator::world();
  train::Trainer t(cfg, comm);
  train::TrainSummary s = t.run();
  LayoutRun r{s.losses, {}, {}, s.last_checkpoint};
  for (const nn::Parameter& p : t.model().parameter_list()) {
    r.pieces.emplace_back(p.name, p.tensor.detach().clone());
    if (distributed) r.specs.push_back(p.meta.spec);
  }
  return r;
}

// The single-process reference, computed by every rank for itself (own output directory).
LayoutRun reference(const SharedDir& dir, const std::string& cfg, std::vector<std::string> sets) {
  sets.push_back("output_dir=" + dir.file("ref" + std::to_string(world_rank())));
  return run_layout(cfg, sets, false);
}

// Losses of `got` against steps [first, first + n) of `want`; when both runs ended at the same
// step, `got`'s pieces against the slices of `want`'s full parameters; within tol relative
// (0: bitwise).
void expect_layout_match(const LayoutRun& got, const LayoutRun& want, double tol,
                         size_t first_step = 0) {
  ASSERT_LE(first_step + got.losses.size(), want.losses.size());
  ASSERT_FALSE(got.losses.empty());
  for (size_t i = 0; i < got.losses.size(); ++i) {
    const double w = want.losses[first_step + i];
    if (tol == 0.0)
      EXPECT_EQ(got.losses[i], w) << "step " << first_step + i + 1;
    else
      EXPECT_LE(std::abs(got.losses[i] - w), tol * std::abs(w))
          << "step " << first_step + i + 1 << ": " << got.losses[i] << " vs " << w;
  }
  if (first_step + got.losses.size() != want.losses.size()) return;
  std::map<std::string, Tensor> full(want.pieces.begin(), want.pieces.end());
  ASSERT_FALSE(got.pieces.empty());
  for (size_t i = 0; i < got.pieces.size(); ++i) {
    const auto& [name, piece] = got.pieces[i];
    ASSERT_TRUE(full.count(name)) << name;
    Tensor expect = got.specs.empty() ? full.at(name) : extract_shard(full.at(name), got.specs[i]);
    if (tol == 0.0)
      EXPECT_EQ(piece.to_vector<float>(), expect.to_vector<float>()) << name;
    else
      EXPECT_LE(rel_diff(piece, expect), tol) << name;
  }
}

// 20 straight steps under `sets` vs 10 + restart (checkpoint.resume=auto) + 10: the losses of
// every step and the final pieces must be bitwise equal. Returns the straight run.
LayoutRun expect_bitwise_resume(const SharedDir& dir, const std::string& cfg,
                                std::vector<std::string> sets, const std::string& name) {
  LayoutRun straight = run_layout(cfg, sets, true);
  sets.push_back("output_dir=" + dir.file(name));
  sets.push_back("checkpoint.dir=" + dir.file(name + "_ck"));
  std::vector<std::string> half = sets;
  half.push_back("max_steps=10");
  LayoutRun a = run_layout(cfg, half, true);
  sets.push_back("checkpoint.resume=auto");
  LayoutRun b = run_layout(cfg, sets, true);
  EXPECT_EQ(a.losses.size(), 10u);
  EXPECT_EQ(b.losses.size(), 10u);
  std::vector<double> joined = a.losses;
  joined.insert(joined.end(), b.losses.begin(), b.losses.end());
  EXPECT_EQ(joined, straight.losses);
  EXPECT_EQ(b.pieces.size(), straight.pieces.size());
  for (size_t i = 0; i < std::min(b.pieces.size(), straight.pieces.size()); ++i)
    EXPECT_EQ(b.pieces[i].second.to_vector<float>(), straight.pieces[i].second.to_vector<float>())
        << b.pieces[i].first;
  return straight;
}

// Issue 4: losses at every step and final parameters within 1e-5 relative of one process (the
// layouts change only summation orders: row-parallel partial sums, vocab-parallel softmax
// statistics, the DP gradient average, the norm's per-rank partial sums).
constexpr double kLayoutTol = 1e-5;

// Steps 1-10 under `sets` (distributed), checked against the single-process `ref`; returns the
// run, whose last_checkpoint is step 10's.
LayoutRun first_ten_steps(const SharedDir& dir, const std::string& cfg, const LayoutRun& ref,
                          std::vector<std::string> sets) {
  sets.push_back("max_steps=10");
  sets.push_back("checkpoint.dir=" + dir.file("ck"));
  LayoutRun a = run_layout(cfg, sets, true);
  EXPECT_EQ(a.losses.size(), 10u);
  expect_layout_match(a, ref, kLayoutTol);
  return a;
}

// Resumes `checkpoint` under `sets` (into output dir `out`) and checks steps 11-20 and the final
// parameters against `ref`. distributed = false: rank 0 alone runs one process while the others
// wait (a failed assertion still reaches the barrier).
void expect_resume_matches(const SharedDir& dir, const std::string& cfg, const LayoutRun& ref,
                           const std::string& checkpoint, std::vector<std::string> sets,
                           const std::string& out, bool distributed) {
  sets.push_back("checkpoint.resume=" + checkpoint);
  sets.push_back("output_dir=" + dir.file(out));
  auto run = [&] {
    LayoutRun b = run_layout(cfg, sets, distributed);
    ASSERT_EQ(b.losses.size(), 10u);
    expect_layout_match(b, ref, kLayoutTol, 10);
  };
  if (distributed) {
    run();
    return;
  }
  if (world_rank() == 0) run();
  MPI_Barrier(MPI_COMM_WORLD);
}

std::vector<std::string> layout(int tp, int pp, int dp) {
  return {"parallel.tp=" + std::to_string(tp), "parallel.pp=" + std::to_string(pp),
          "parallel.dp=" + std::to_string(dp)};
}

void check_layout(int tp, int pp, int dp, const char* schedule,
                  const std::vector<std::string>& extra = {}) {
  ASSERT_EQ(world_size(), tp * pp * dp) << "run this test with mpirun -np " << tp * pp * dp;
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  LayoutRun ref = reference(dir, cfg, {});
  std::vector<std::string> sets = layout(tp, pp, dp);
  sets.push_back(std::string("parallel.schedule=") + schedule);
  sets.insert(sets.end(), extra.begin(), extra.end());
  LayoutRun got = run_layout(cfg, sets, true);
  ASSERT_EQ(got.losses.size(), 20u);
  expect_layout_match(got, ref, kLayoutTol);
  EXPECT_LT(got.losses.back(), got.losses.front());  // it trained
}

// Issue 12: tiny Llama-architecture models (RMSNorm, rotary embeddings, SwiGLU of width 48,
// q/k/v biases, untied head) for 10 steps under a layout match one process within kLayoutTol.
// With RoPE a key bias has a real, position-dependent gradient (unlike the zero-gradient key bias
// the GPT-2 config above avoids), but only where its rotation pair turns over the 16 positions:
// at rope_theta 10000 the slowest pairs of an 8-wide head turn by < 0.02 rad, their bias gradient
// is ~0 and AdamW amplifies the layouts' rounding differences there to ~1e-4 relative (1.2e-5
// still at rope_theta 100 with the llama3 scaling, which slows those pairs 4x). rope_theta 10
// turns the slowest pair by >= 0.7 rad even scaled.
std::vector<std::string> llama(int64_t n_kv_head, bool llama3_scaling = false) {
  std::vector<std::string> s = {"model.norm=rms_norm", "model.position=rope", "model.mlp=swiglu",
                                "model.intermediate_size=48", "model.qkv_bias=true",
                                "model.tie_embeddings=false", "model.rope_theta=10",
                                "max_steps=10",
                                "model.n_kv_head=" + std::to_string(n_kv_head)};
  if (llama3_scaling) {
    s.push_back("model.rope_scaling.type=llama3");
    s.push_back("model.rope_scaling.factor=4");
    s.push_back("model.rope_scaling.original_max_positions=8");
  }
  return s;
}

void check_llama_layout(int tp, int pp, const std::vector<std::string>& model, int dp = 1,
                        const std::vector<std::string>& layout_only = {}) {
  ASSERT_EQ(world_size(), tp * pp * dp) << "run this test with mpirun -np " << tp * pp * dp;
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  LayoutRun ref = reference(dir, cfg, model);
  std::vector<std::string> sets = layout(tp, pp, dp);
  sets.insert(sets.end(), model.begin(), model.end());
  sets.insert(sets.end(), layout_only.begin(), layout_only.end());
  LayoutRun got = run_layout(cfg, sets, true);
  ASSERT_EQ(got.losses.size(), 10u);
  expect_layout_match(got, ref, kLayoutTol);
  EXPECT_LT(got.losses.back(), got.losses.front());  // it trained
}

// GQA, 2 kv heads split over TP=2 (one per rank).
TEST(Layouts2, LlamaGqaTp2SplitsKvHeads) { check_llama_layout(2, 1, llama(2, true)); }
// MQA, 1 kv head replicated on both TP ranks (tp > n_kv_head).
TEST(Layouts2, LlamaMqaTp2ReplicatesTheKvHead) { check_llama_layout(2, 1, llama(1)); }
TEST(Layouts2, LlamaGqaPp2) { check_llama_layout(1, 2, llama(2)); }
TEST(Layouts4, LlamaGqaTp2Pp2) { check_llama_layout(2, 2, llama(2, true)); }
TEST(Layouts4, LlamaMqaTp2Pp2) { check_llama_layout(2, 2, llama(1)); }
// DP=2 x TP=2 x PP=2 with ZeRO-1 and full recomputation (both runs recompute; it is bitwise the
// run without it, GPTTest).
TEST(Layouts8, LlamaGqaDp2Tp2Pp2Zero1FullRecompute) {
  std::vector<std::string> model = llama(2, true);
  model.push_back("recompute=FULL");
  check_llama_layout(2, 2, model, 2, {"parallel.zero_stage=1"});
}

// Issue 12: `init_from: "hf:DIR"` with no model section, each rank reading only its pieces of
// the HF tensors (io/HfReader.h), trains under TP=2 and TP=2 x PP=2 like one process. Fixtures of
// gen_llama_family.py, the vocabulary padded to an even size in both runs (as TP=2 needs) so the
// pieces compare.
void check_hf_init_layout(int tp, int pp, const std::string& fixture,
                          const std::string& optimizer) {
  ASSERT_EQ(world_size(), tp * pp) << "run this test with mpirun -np " << tp * pp;
  SharedDir dir;
  const std::string cfg = dir.file("hf.pbtxt");
  if (world_rank() == 0)
    std::ofstream(cfg) << "name: \"hf\"\nseed: 7\nmax_steps: 10\noutput_dir: \"" << dir.file("run")
                       << "\"\ninit_from: \"hf:" << testing::golden_dir() << "hf_llama/"
                       << fixture << "\"\n"
                       << "model { vocab_pad_multiple: 2 }\n"
                       << "data { train_path: \"" << dir.file("train.h5") << "\" seq_len: 16 }\n"
                       << "optimizer { " << optimizer << " grad_clip: 1.0 }\n"
                       << "batch { micro_batch_size: 2 global_batch_size: 8 }\n"
                       << "eval { interval: 0 }\ncheckpoint { interval: 0 resume: \"none\" }\n"
                       << "logging { progress: OFF tensorboard: false }\n";
  MPI_Barrier(MPI_COMM_WORLD);
  LayoutRun ref = reference(dir, cfg, {});
  LayoutRun got = run_layout(cfg, layout(tp, pp, 1), true);
  ASSERT_EQ(got.losses.size(), 10u);
  expect_layout_match(got, ref, kLayoutTol);
  EXPECT_LT(got.losses.back(), got.losses.front());  // it trained
}

// Mistral: 8 heads, 2 kv heads split over TP, untied head, vocabulary 103 -> 104.
TEST(Layouts2, HfMistralInitTp2) { check_hf_init_layout(2, 1, "mistral_gqa_untied", "lr: 1e-3"); }
TEST(Layouts4, HfMistralInitTp2Pp2) {
  check_hf_init_layout(2, 2, "mistral_gqa_untied", "lr: 1e-3");
}
// Qwen2: one kv head replicated on both TP ranks, q/k/v biases, tied head, vocabulary 89 -> 90.
TEST(Layouts2, HfQwen2InitTp2ReplicatesTheKvHead) {
  check_hf_init_layout(2, 1, "qwen2_mqa_bias_tied", "lr: 1e-3");
}

TEST(Layouts2, Tp2) { check_layout(2, 1, 1, "ONE_F_ONE_B"); }
TEST(Layouts2, Pp2OneFOneB) { check_layout(1, 2, 1, "ONE_F_ONE_B"); }
TEST(Layouts2, Pp2GPipe) { check_layout(1, 2, 1, "GPIPE"); }
// vocab 65 at TP=2 is padded to 66 rows (a zero row no id or target uses, masked out of the
// loss): it trains like the unpadded single process, and its checkpoint resumes on one process
// (the zero row dropped) with the next steps matching the uninterrupted run.
TEST(Layouts2, Tp2OddVocabMatchesAndResumesOnOneProcess) {
  ASSERT_EQ(world_size(), 2) << "run this test with mpirun -np 2";
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  LayoutRun ref = reference(dir, cfg, {"model.vocab_size=65"});
  std::vector<std::string> sets = layout(2, 1, 1);
  sets.push_back("model.vocab_size=65");
  LayoutRun a = first_ten_steps(dir, cfg, ref, sets);
  expect_resume_matches(dir, cfg, ref, a.checkpoint, {"model.vocab_size=65"}, "one", false);
}

TEST(Layouts4, Tp2Pp2) { check_layout(2, 2, 1, "ONE_F_ONE_B"); }

// Dropout under TP=2 x PP=2: masks keyed by (step, micro-batch, layer), so 10 + restart + 10
// steps equal 20 straight ones bitwise, and the run differs from the dropout-free one.
TEST(Layouts4, Tp2Pp2WithDropoutResumesBitwise) {
  ASSERT_EQ(world_size(), 4) << "run this test with mpirun -np 4";
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  std::vector<std::string> sets = layout(2, 2, 1);
  LayoutRun plain = run_layout(cfg, sets, true);
  sets.push_back("model.dropout=0.1");
  LayoutRun straight = expect_bitwise_resume(dir, cfg, sets, "drop");
  EXPECT_NE(straight.losses, plain.losses) << "dropout 0.1 dropped nothing";
  EXPECT_LT(straight.losses.back(), straight.losses.front());
}
TEST(Layouts8, Dp2Tp2Pp2) { check_layout(2, 2, 2, "ONE_F_ONE_B"); }
// ZeRO-1 under TP x PP: AdamW state sharded over the DP ranks of each (tp, pp) position; the
// clipping norm counts owned pieces over DP shards and the replica's TP x PP ranks.
TEST(Layouts8, Dp2Tp2Pp2Zero1) {
  check_layout(2, 2, 2, "ONE_F_ONE_B", {"parallel.zero_stage=1"});
}

// Saved under TP=2 x PP=2 at step 10; resumed under one process and under DP=2 x PP=2, the next
// 10 steps match the uninterrupted single-process run.
TEST(Layouts4, CheckpointFromTp2Pp2ResumesUnderOtherLayouts) {
  ASSERT_EQ(world_size(), 4) << "run this test with mpirun -np 4";
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  LayoutRun ref = reference(dir, cfg, {});
  LayoutRun a = first_ten_steps(dir, cfg, ref, layout(2, 2, 1));
  expect_resume_matches(dir, cfg, ref, a.checkpoint, {}, "one", false);
  expect_resume_matches(dir, cfg, ref, a.checkpoint, layout(1, 2, 2), "dppp", true);
}

// ZeRO-1 under DP=2 x PP=2 saves logical optimizer state (gathered over DP, written as pieces):
// resumed under TP=2 x PP=2 without ZeRO, steps 11-20 match the uninterrupted single process.
TEST(Layouts4, Zero1CheckpointResumesWithoutZeroUnderTp2Pp2) {
  ASSERT_EQ(world_size(), 4) << "run this test with mpirun -np 4";
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  LayoutRun ref = reference(dir, cfg, {});
  std::vector<std::string> zero = layout(1, 2, 2);
  zero.push_back("parallel.zero_stage=1");
  LayoutRun a = first_ten_steps(dir, cfg, ref, zero);
  expect_resume_matches(dir, cfg, ref, a.checkpoint, layout(2, 2, 1), "tppp", true);
}

// DP=2 x TP=2 x PP=2: 20 straight steps vs 10 + restart + 10, bitwise (same layout, same
// summation orders; the checkpoint restores parameters, AdamW moments, step and data position).
TEST(Layouts8, BitwiseResumeUnderDp2Tp2Pp2) {
  ASSERT_EQ(world_size(), 8) << "run this test with mpirun -np 8";
  SharedDir dir;
  std::string cfg = write_layout_config(dir);
  expect_bitwise_resume(dir, cfg, layout(2, 2, 2), "split");
}

}  // namespace
}  // namespace loom

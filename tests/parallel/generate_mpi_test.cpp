// Batched generation (models/Generate.h) across MPI processes (np 2, 3, 4): with the world as the
// TP group (each rank holds its heads, MLP columns and vocabulary rows) and as the PP group (each
// rank a stage), greedy and seeded-sampling outputs for ragged prompts with several samples each
// equal the one-process model's on every rank, for GPT-2 and a Llama config (RoPE, GQA, SwiGLU).
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "core/random/Generator.h"
#include "models/Generate.h"
#include "parallel/ProcessGroups.h"
#include "parallel/comm/MpiCommunicator.h"

namespace loom::models {
namespace {

std::shared_ptr<MpiCommunicator> world() {
  CommOptions o;
  o.name = "generate";
  o.timeout_s = 60.0;  // TESTPLAN: every collective in a multi-rank test has a 60 s deadline
  return MpiCommunicator::world(o);
}

// 12 heads, 72 vocabulary rows, MLP 192 (SwiGLU 96): divisible by 2, 3 and 4 ranks; 4 layers
// for up to 4 pipeline stages. Llama: kv heads = tp, so every rank holds its own kv heads.
GPTConfig config(bool llama, int tp) {
  GPTConfig c;
  c.n_layer = 4;
  c.n_head = 12;
  c.n_embd = 48;
  c.vocab_size = 72;
  c.block_size = 16;
  c.init_std = 0.1;  // wider than GPT-2's 0.02 so the next-token distributions are not flat
  if (llama) {
    c.norm = NormKind::RMSNorm;
    c.position = PositionKind::Rope;
    c.mlp = MlpKind::SwiGLU;
    c.intermediate_size = 96;
    c.n_kv_head = tp;
    c.bias = false;
    c.tie_embeddings = false;
  }
  return c;
}

std::vector<GenerationRequest> requests() {
  Generator gen(5);
  std::vector<GenerationRequest> q;
  for (int64_t len : {3, 1, 7, 12, 5}) {
    std::vector<int64_t> ids;
    for (double u : Tensor::rand({len}, gen, DType::F64).to_vector<double>())
      ids.push_back(int64_t(u * 72.0));
    q.push_back({ids, 1 + len % 3, 100 + uint64_t(len), 0, 0});
  }
  return q;
}

// Greedy and sampled (temperature 1, EOS on) outputs of `model` equal those of the one-process
// model of the same config and seed.
void expect_same_as_one_process(GPT& model, const GPTConfig& c) {
  GPT single(c);
  single.init_weights(9);
  for (double temperature : {0.0, 1.0}) {
    SCOPED_TRACE("temperature " + std::to_string(temperature));
    SamplingOptions o;
    o.temperature = temperature;
    o.max_new_tokens = 8;
    o.eos_id = 3;
    const auto reqs = requests();
    EXPECT_EQ(generate_batch(model, reqs, o), generate_batch(single, reqs, o));
  }
}

TEST(GenerateMpiTest, TensorParallelEqualsOneProcess) {
  auto w = world();
  ProcessGrid grid(w, w->size(), /*pp=*/1, /*dp=*/1);
  for (bool llama : {false, true}) {
    SCOPED_TRACE(std::string(llama ? "llama" : "gpt2") + " tp=" + std::to_string(w->size()) +
                 " rank " + std::to_string(w->rank()));
    const GPTConfig c = config(llama, w->size());
    GPT model(c, {&grid.tp_group(), &grid.pp_group()});
    model.init_weights(9);
    expect_same_as_one_process(model, c);
  }
}

TEST(GenerateMpiTest, PipelineStagesEqualOneProcess) {
  auto w = world();
  ProcessGrid grid(w, /*tp=*/1, w->size(), /*dp=*/1);
  for (bool llama : {false, true}) {
    SCOPED_TRACE(std::string(llama ? "llama" : "gpt2") + " pp=" + std::to_string(w->size()) +
                 " rank " + std::to_string(w->rank()));
    const GPTConfig c = config(llama, 1);
    GPT model(c, {&grid.tp_group(), &grid.pp_group()});
    model.init_weights(9);
    expect_same_as_one_process(model, c);
  }
}

}  // namespace
}  // namespace loom::models

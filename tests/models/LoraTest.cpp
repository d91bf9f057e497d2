// LoRA adapters (parallel/tensor/Lora.h, the linear layers' add_lora, GPT::add_lora): gradcheck
// of each adapter forward in f64; the column- and row-parallel layers with an adapter against the
// closed form linear(x, W + (alpha/r) B A, b) at TP 1 and 2 (values and gradients); a LoRA GPT
// freezes every base weight, starts equal to its base model, and matches one process at TP=2 with
// adapter dropout on.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "core/autograd/GradMode.h"
#include "core/ops/Elementwise.h"
#include "core/ops/Linear.h"
#include "core/ops/Reduction.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"
#include "models/GPT.h"
#include "parallel/comm/FakeCommunicator.h"
#include "parallel/tensor/Lora.h"
#include "parallel/tensor/ParallelLinear.h"
#include "tests/parallel/TensorParallelCases.h"
#include "tests/support/GradCheck.h"

namespace loom {
namespace {

using test::leaf;
using test::load_full;
using test::piece_of;
using test::rel_frob;

const tp::LoraOptions kLora{/*rank=*/3, /*alpha=*/6.0, /*dropout=*/0.0, /*init_std=*/0.02};

CommOptions opts() {
  CommOptions o;
  o.timeout_s = 60.0;  // TESTPLAN: every collective in a test has a 60 s deadline
  return o;
}

TEST(LoraTest, AdapterForwardsPassGradcheckInF64) {
  std::shared_ptr<Communicator> one = FakeCommunicator::create_world(1)[0];
  Generator gen(5);
  Tensor x = Tensor::randn({2, 3, 6}, gen, DType::F64).set_requires_grad(true);
  Tensor A = Tensor::randn({3, 6}, gen, DType::F64).set_requires_grad(true);
  Tensor B = Tensor::randn({4, 3}, gen, DType::F64).set_requires_grad(true);
  Communicator& c = *one;
  EXPECT_TRUE(testing::gradcheck(
      [&c](const std::vector<Tensor>& in) {
        return tp::lora_column(in[0], in[1], in[2], kLora, nullptr, c);
      },
      {x, A, B}));
  EXPECT_TRUE(testing::gradcheck(
      [&c](const std::vector<Tensor>& in) {
        return tp::lora_row(in[0], in[1], in[2], kLora, nullptr, c);
      },
      {x, A, B}));
  EXPECT_TRUE(testing::gradcheck(
      [](const std::vector<Tensor>& in) {
        return tp::lora_whole(in[0], in[1], in[2], kLora, nullptr);
      },
      {x, A, B}));
}

// Logical tensors of a layer with an adapter, B non-zero (a fresh B = 0 would hide A's part).
struct LayerCase {
  Tensor W, b, A, B, x, up;
};

LayerCase make_case(int64_t in, int64_t out, uint64_t seed) {
  Generator gen(seed);
  return {Tensor::randn({out, in}, gen, DType::F64), Tensor::randn({out}, gen, DType::F64),
          Tensor::randn({kLora.rank, in}, gen, DType::F64),
          Tensor::randn({out, kLora.rank}, gen, DType::F64),
          Tensor::randn({2, 3, in}, gen, DType::F64), Tensor::randn({2, 3, out}, gen, DType::F64)};
}

// The closed form: y = linear(x, W + (alpha/r) B A, b) and its gradients through autograd.
struct Reference {
  Tensor y, dx, dA, dB;
};

Reference closed_form(const LayerCase& k) {
  Tensor A = leaf(k.A), B = leaf(k.B), x = leaf(k.x);
  Tensor y = linear(x, k.W + matmul(B, A) * kLora.scale(), k.b);
  sum(y * k.up).backward();
  return {y.detach(), x.grad(), A.grad(), B.grad()};
}

// Tolerance: f64 sums in another order than the closed form (TensorParallelCases' tp_tolerance).
constexpr double kTol = 1e-12;

TEST(LoraTest, ColumnParallelAdapterEqualsTheMergedWeightAtTp1And2) {
  const LayerCase k = make_case(8, 12, 21);
  const Reference ref = closed_form(k);
  for (int n : {1, 2}) {
    run_fake_ranks(
        n,
        [&](Communicator& c) {
          tp::ColumnParallelLinear layer(8, 12, c, {true, 0.02, DType::F64});
          layer.add_lora(kLora);
          load_full(layer, {{"weight", k.W}, {"bias", k.b}, {"lora_A", k.A}, {"lora_B", k.B}});
          Tensor x = leaf(k.x);
          Tensor y = layer.forward(x);
          EXPECT_LE(rel_frob(y, tp::slice_for_rank(ref.y, -1, c.rank(), n)), kTol);
          sum(y * tp::slice_for_rank(k.up, -1, c.rank(), n)).backward();
          EXPECT_LE(rel_frob(x.grad(), ref.dx), kTol);
          EXPECT_LE(rel_frob(layer.lora_A().grad(), ref.dA), kTol);
          EXPECT_LE(rel_frob(layer.lora_B().grad(), piece_of(layer, "lora_B", ref.dB)), kTol);
        },
        opts());
  }
}

TEST(LoraTest, RowParallelAdapterEqualsTheMergedWeightAtTp1And2) {
  const LayerCase k = make_case(12, 8, 22);
  const Reference ref = closed_form(k);
  for (int n : {1, 2}) {
    run_fake_ranks(
        n,
        [&](Communicator& c) {
          tp::RowParallelLinear layer(12, 8, c, {true, 0.02, DType::F64});
          layer.add_lora(kLora);
          load_full(layer, {{"weight", k.W}, {"bias", k.b}, {"lora_A", k.A}, {"lora_B", k.B}});
          Tensor x = leaf(tp::slice_for_rank(k.x, -1, c.rank(), n));
          Tensor y = layer.forward(x);
          EXPECT_LE(rel_frob(y, ref.y), kTol);
          sum(y * k.up).backward();
          EXPECT_LE(rel_frob(x.grad(), tp::slice_for_rank(ref.dx, -1, c.rank(), n)), kTol);
          EXPECT_LE(rel_frob(layer.lora_A().grad(), piece_of(layer, "lora_A", ref.dA)), kTol);
          EXPECT_LE(rel_frob(layer.lora_B().grad(), ref.dB), kTol);
        },
        opts());
  }
}

TEST(LoraTest, MergeIsTheClosedForm) {
  const LayerCase k = make_case(5, 4, 23);
  Tensor want = k.W + matmul(k.B, k.A) * (kLora.alpha / double(kLora.rank));
  EXPECT_LE(rel_frob(tp::lora_merge(k.W, k.A, k.B, kLora), want), kTol);
}

models::GPTConfig tiny(int64_t n_kv_head = 0) {
  models::GPTConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = n_kv_head;
  c.n_embd = 32;
  c.vocab_size = 64;
  c.block_size = 16;
  c.dropout = 0.0;
  return c;
}

Tensor ids_of(uint64_t seed, int64_t B, int64_t T) {
  std::vector<int64_t> v(size_t(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t((i * 37 + seed * 11) % 64);
  return Tensor::from_vector<int64_t>(v, {B, T});
}

TEST(LoraTest, GptFreezesTheBaseAndStartsEqualToIt) {
  models::GPT base(tiny()), lora(tiny());
  base.init_weights(7);
  lora.init_weights(7);
  lora.add_lora(kLora, {"qkv", "proj", "fc"}, 7);
  std::vector<nn::Parameter> trainable = lora.trainable_parameter_list();
  EXPECT_EQ(trainable.size(), 2u * 4u * 2u);  // A and B of 4 layers in each of 2 blocks
  for (const nn::Parameter& p : trainable) EXPECT_TRUE(models::is_lora_param(p.name)) << p.name;
  EXPECT_EQ(trainable.front().name, "blocks.0.attn.qkv.lora_A");
  Tensor ids = ids_of(3, 2, 8);
  // B = 0: the adapters add exact zeros.
  EXPECT_EQ(lora.forward(ids).to_vector<float>(), base.forward(ids).to_vector<float>());
  lora.loss(ids, ids_of(4, 2, 8)).backward();
  for (const nn::Parameter& p : lora.parameter_list()) {
    EXPECT_EQ(p.tensor.requires_grad(), models::is_lora_param(p.name)) << p.name;
    EXPECT_EQ(p.tensor.grad().defined(), models::is_lora_param(p.name)) << p.name;
  }
}

TEST(LoraTest, UnknownTargetIsAnErrorListingTheLayers) {
  models::GPT gqa(tiny(/*n_kv_head=*/2));
  try {
    gqa.add_lora(kLora, {"qkv"}, 1);  // a grouped-query model has attn.q and attn.kv
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("lora.target_modules"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("attn.kv"), std::string::npos) << e.what();
  }
  tp::LoraOptions bad = kLora;
  bad.rank = 0;
  EXPECT_THROW(gqa.add_lora(bad, {"q"}, 1), ValueError);
}

// Every adapter element drawn (B too), so the adapters change the output.
void draw_all_adapters(models::GPT& m, uint64_t seed) {
  for (const nn::Parameter& p : m.trainable_parameter_list()) {
    nn::ParamMeta meta = p.meta;
    meta.init = nn::Init::Normal;
    meta.std = 0.1;
    nn::init_piece(p.tensor, p.name, meta, seed);
  }
}

TEST(LoraTest, GptAtTp2WithAdapterDropoutEqualsOneProcess) {
  for (int64_t kv : {0, 2, 1}) {  // fused qkv; kv heads split; kv replicated (tp > n_kv_head)
    SCOPED_TRACE(::testing::Message() << "n_kv_head=" << kv);
    tp::LoraOptions o = kLora;
    o.dropout = 0.25;
    const std::vector<std::string> layers =
        kv == 0 ? std::vector<std::string>{"qkv", "proj", "fc"}
                : std::vector<std::string>{"attn.q", "kv", "proj", "mlp.fc"};
    Tensor ids = ids_of(8, 2, 8), tg = ids_of(9, 2, 8);
    models::GPT one(tiny(kv));
    one.init_weights(3);
    one.add_lora(o, layers, 3);
    draw_all_adapters(one, 4);
    Tensor loss = one.loss(ids, tg);
    loss.backward();
    const double want = loss.item();
    std::map<std::string, Tensor> grads;
    for (const nn::Parameter& p : one.trainable_parameter_list()) grads[p.name] = p.tensor.grad();
    run_fake_ranks(
        2,
        [&](Communicator& c) {
          models::GPT part(tiny(kv), {&c, nullptr});
          part.init_weights(3);
          part.add_lora(o, layers, 3);
          draw_all_adapters(part, 4);
          // Tolerance: f32 sums split over two ranks (TensorParallelCases' f32 tp_tolerance).
          Tensor l = part.loss(ids, tg);
          l.backward();
          const double got = l.item();
          EXPECT_NEAR(got, want, 1e-6 * std::abs(want));
          for (const nn::Parameter& p : part.trainable_parameter_list())
            EXPECT_LE(rel_frob(p.tensor.grad(), extract_shard(grads.at(p.name), p.meta.spec)),
                      1e-5)
                << p.name;  // Tolerance: f32 gradients through two all-reduces (issue: 1e-5)
        },
        opts());
  }
}

TEST(LoraTest, RecomputeModesGiveTheAdaptersTheSameGradients) {
  // The base is frozen, so the first block's input needs no gradient: FULL recompute must still
  // backpropagate into that block's adapters.
  std::vector<Tensor> first;
  for (models::Recompute r :
       {models::Recompute::None, models::Recompute::Selective, models::Recompute::Full}) {
    models::GPTConfig c = tiny();
    c.dropout = 0.1;
    models::GPT m(c);
    m.init_weights(3);
    tp::LoraOptions o = kLora;
    o.dropout = 0.1;
    m.add_lora(o, {"qkv", "proj", "fc"}, 3);
    draw_all_adapters(m, 4);
    m.set_recompute(r);
    m.loss(ids_of(8, 2, 8), ids_of(9, 2, 8)).backward();
    std::vector<Tensor> grads;
    for (const nn::Parameter& p : m.trainable_parameter_list()) {
      ASSERT_TRUE(p.tensor.grad().defined()) << p.name << " recompute " << int(r);
      grads.push_back(p.tensor.grad());
    }
    if (first.empty()) first = grads;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (r == models::Recompute::Full) {  // bitwise: the same kernels rerun on the same input
        EXPECT_EQ(grads[i].to_vector<float>(), first[i].to_vector<float>()) << i;
      } else {
        // Selective: mlp.proj's GELU gradient is gelu'(a) g_base + gelu'(a) g_lora (the fused
        // gelu_linear backward, then the adapter's) instead of gelu'(a) (g_base + g_lora): f32
        // rounding of one sum per element.
        EXPECT_LE(rel_frob(grads[i], first[i]), 1e-6) << i;
      }
    }
  }
}

}  // namespace
}  // namespace loom

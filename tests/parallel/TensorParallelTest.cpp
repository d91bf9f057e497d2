// Tensor-parallel layers under the Fake communicator (TP ranks as threads): TESTPLAN R-2 (each TP
// layer at TP in {2,4} vs TP=1, forward + backward, fp64 and fp32; sharded weight gradients equal
// the matching pieces of the TP=1 gradients), the MLP and the GPT block (models::Block), R-7 (TP
// dropout RNG), the mapping pairs themselves and argument errors.
#include <gtest/gtest.h>

#include <algorithm>

#include "parallel/comm/FakeCommunicator.h"
#include "tests/parallel/TensorParallelCases.h"

namespace loom {
namespace {

using test::rel_frob;

CommOptions opts() {
  CommOptions o;
  o.timeout_s = 60.0;  // TESTPLAN: every collective in a test has a 60 s deadline
  return o;
}

void for_tp_and_dtype(const std::function<void(Communicator&, DType)>& fn) {
  for (int tp : {2, 4}) {
    for (DType dt : {DType::F64, DType::F32}) {
      SCOPED_TRACE(testing::Message() << "tp=" << tp << " dtype=" << dtype_name(dt));
      run_fake_ranks(
          tp, [&](Communicator& c) { fn(c, dt); }, opts());
    }
  }
}

TEST(TensorParallelTest, CopyToTPIsIdentityForwardAndAllReduceBackward) {
  run_fake_ranks(
      3,
      [](Communicator& c) {
        Tensor x = Tensor::full({2, 2}, 1.0, DType::F64).set_requires_grad(true);
        Tensor y = tp::copy_to_tp(x, c);
        EXPECT_EQ(y.to_vector<double>(), std::vector<double>(4, 1.0));
        sum(y * double(c.rank() + 1)).backward();  // per-rank gradients 1, 2, 3
        EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(4, 6.0));
      },
      opts());
}

TEST(TensorParallelTest, ReduceFromTPSumsForwardAndPassesGradientThrough) {
  run_fake_ranks(
      3,
      [](Communicator& c) {
        Tensor x = Tensor::full({3}, double(c.rank() + 1), DType::F64).set_requires_grad(true);
        Tensor y = tp::reduce_from_tp(x, c);
        EXPECT_EQ(y.to_vector<double>(), std::vector<double>(3, 6.0));
        EXPECT_EQ(x.to_vector<double>(),
                  std::vector<double>(3, double(c.rank() + 1)));  // untouched
        sum(y * 2.0).backward();
        EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(3, 2.0));
      },
      opts());
}

TEST(TensorParallelTest, ScatterAndGatherAreTwinsAlongTheLastDim) {
  run_fake_ranks(
      4,
      [](Communicator& c) {
        const int r = c.rank();
        Tensor full = Tensor::arange(24, DType::I64).to(DType::F64).reshape({3, 8});
        Tensor x = full.clone().set_requires_grad(true);
        Tensor mine = tp::scatter_to_tp(x, c);  // (3, 2): columns [2r, 2r+2)
        EXPECT_EQ(mine.shape(), (Shape{3, 2}));
        EXPECT_EQ(mine.to_vector<double>(),
                  full.narrow(1, 2 * r, 2).contiguous().to_vector<double>());
        Tensor back = tp::gather_from_tp(mine, c);
        EXPECT_EQ(back.to_vector<double>(), full.to_vector<double>());
        // d/dx of sum(back * w) with w = full: gather's backward keeps this rank's slice of w, and
        // scatter's backward all-gathers the slices, so x.grad == full on every rank.
        sum(back * full).backward();
        EXPECT_EQ(x.grad().to_vector<double>(), full.to_vector<double>());
      },
      opts());
}

TEST(TensorParallelTest, NoGraphIsRecordedWithoutRequiresGrad) {
  run_fake_ranks(
      2,
      [](Communicator& c) {
        Tensor y = tp::reduce_from_tp(Tensor::ones({2}), c);
        EXPECT_FALSE(y.requires_grad());
        EXPECT_EQ(y.to_vector<float>(), std::vector<float>(2, 2.0f));
      },
      opts());
}

TEST(TensorParallelTest, ColumnParallelLinearMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_column_parallel(c, dt, false); });
}

TEST(TensorParallelTest, ColumnParallelLinearWithGatheredOutputMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_column_parallel(c, dt, true); });
}

TEST(TensorParallelTest, RowParallelLinearMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_row_parallel(c, dt, true); });
}

TEST(TensorParallelTest, RowParallelLinearWithScatteredInputMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_row_parallel(c, dt, false); });
}

TEST(TensorParallelTest, VocabParallelEmbeddingMatchesTP1WithPaddedVocab) {
  for_tp_and_dtype([](Communicator& c, DType dt) {
    test::check_vocab_parallel_embedding(c, dt, 11);  // 11 % tp != 0: padded to 12
    test::check_vocab_parallel_embedding(c, dt, 16);  // no padding
  });
}

TEST(TensorParallelTest, VocabParallelCrossEntropyMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) {
    for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
      test::check_vocab_parallel_cross_entropy(c, dt, 11, red);
      test::check_vocab_parallel_cross_entropy(c, dt, 16, red);
      test::check_vocab_parallel_cross_entropy(c, dt, 101, red);  // AVX loops + tails
    }
  });
}

TEST(TensorParallelTest, VocabParallelCrossEntropyHandlesARankOfOnlyPadding) {
  // vocab 5 at TP 4 pads to 8 rows: rank 3 holds rows 6, 7, both padding.
  run_fake_ranks(
      4,
      [](Communicator& c) {
        test::check_vocab_parallel_cross_entropy(c, DType::F64, 5, Reduction::Mean);
      },
      opts());
}

TEST(TensorParallelTest, VocabParallelCrossEntropyBackwardMatchesFiniteDifferences) {
  // Gradcheck of the hand-written backward at TP=2 with PyTorch's defaults (eps 1e-6, atol 1e-5,
  // rtol 1e-3): all ranks walk every (rank, element) pair in lockstep; only the owner perturbs its
  // element, and every rank evaluates the (replicated) loss. The logits are a strided view.
  run_fake_ranks(
      2,
      [](Communicator& c) {
        const int64_t vocab = 7, N = 3;
        tp::VocabPartition part =
            tp::VocabPartition::make(vocab, 2, c.rank());  // 8 rows: 4 per rank
        Generator gen(uint64_t(40 + c.rank()));
        Tensor wide = Tensor::randn({N, 2 * part.local_size()}, gen, DType::F64);
        Tensor targets = Tensor::from_vector<int64_t>({6, 1, -100}, {N});
        auto loss_of = [&](const Tensor& w) {
          Tensor view = w.slice(1, 0, 2 * part.local_size(), 2);  // (N, 4), column stride 2
          return tp::vocab_parallel_cross_entropy(view, targets, part, c);
        };
        Tensor leaf = wide.clone().set_requires_grad(true);
        loss_of(leaf).backward();
        std::vector<double> analytic = leaf.grad().to_vector<double>();
        const double eps = 1e-6;
        for (int owner = 0; owner < 2; ++owner) {
          for (int64_t i = 0; i < wide.numel(); ++i) {
            auto eval = [&](double delta) {
              Tensor w = wide.clone();
              if (c.rank() == owner)
                w.reshape({-1}).narrow(0, i, 1).add_(Tensor::full({1}, delta, DType::F64));
              return loss_of(w).item();
            };
            const double numeric = (eval(eps) - eval(-eps)) / (2 * eps);
            if (c.rank() != owner) continue;
            EXPECT_LE(std::fabs(analytic[size_t(i)] - numeric), 1e-5 + 1e-3 * std::fabs(numeric))
                << "rank " << owner << " element " << i;
          }
        }
      },
      opts());
}

TEST(TensorParallelTest, FusedLinearCrossEntropyMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) {
    test::check_linear_cross_entropy(c, dt, 11, 30, Reduction::Mean);  // padded vocabulary
    test::check_linear_cross_entropy(c, dt, 16, 30, Reduction::Sum);
  });
  // Several chunks: 1200 rows x 16384 columns is over 2 chunks of about 8M logits.
  for_tp_and_dtype([](Communicator& c, DType dt) {
    if (dt == DType::F64) test::check_linear_cross_entropy(c, dt, 16384, 1200, Reduction::Mean);
  });
}

TEST(TensorParallelTest, TiedEmbeddingHeadAndLossMatchTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) {
    test::check_tied_embedding_head_loss(c, dt, 11);  // padded
    test::check_tied_embedding_head_loss(c, dt, 16);
  });
}

TEST(TensorParallelTest, MlpFromColumnAndRowLayersMatchesTP1) {
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_parallel_mlp(c, dt); });
}

TEST(TensorParallelTest, MlpWithResidualDropoutMatchesTP1) {
  // Residual dropout is outside the TP region: the replicated stream gives the TP=1 mask.
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_parallel_mlp(c, dt, 0.3); });
}

TEST(TensorParallelTest, BlockTrainingDropoutIsReproducibleAndLocal) {
  // Inside the TP region each rank drops its own heads' probabilities: same state, same
  // output; and the output stays replicated across ranks (row-parallel reduce).
  run_fake_ranks(
      2,
      [](Communicator& c) {
        models::GPTConfig cfg;
        cfg.n_embd = 8;
        cfg.n_head = 4;
        cfg.dropout = 0.5;
        models::Block block(cfg, c, DType::F64, Device::cpu());
        block.init_parameters(3);
        Generator gen(3);
        Tensor x = Tensor::randn({1, 6, 8}, gen, DType::F64);
        tp::TensorParallelRng rng(17, c.rank());
        Tensor y1 = block.forward(x, rng, models::Recompute::None, models::RopeTables{});
        rng.set_state({17, 0, 0});
        Tensor y2 = block.forward(x, rng, models::Recompute::None, models::RopeTables{});
        EXPECT_EQ(y1.to_vector<double>(), y2.to_vector<double>());
        Tensor both = tp::all_gather_last_dim(y1.contiguous(), c);  // (1, 6, 16)
        EXPECT_EQ(both.narrow(2, 0, 8).contiguous().to_vector<double>(),
                  both.narrow(2, 8, 8).contiguous().to_vector<double>());
        block.eval();
        Tensor eval = block.forward(x, rng, models::Recompute::None, models::RopeTables{});
        EXPECT_GT(rel_frob(y1, eval), 0.0);  // dropout was active in training
      },
      opts());
}

TEST(TensorParallelTest, BlockMatchesTP1Block) {
  for_tp_and_dtype([](Communicator& c, DType dt) { test::check_parallel_block(c, dt, 4); });
}

TEST(TensorParallelTest, DropoutRngDiffersInsideAndAgreesOutsideTPRegions) {
  for (int tp : {2, 4}) run_fake_ranks(tp, [](Communicator& c) { test::check_dropout_rng(c); });
}

TEST(TensorParallelTest, TensorParallelSeedsAreDistinctPerRank) {
  std::vector<uint64_t> seeds;
  for (int r = 0; r < 64; ++r) seeds.push_back(tp::TensorParallelRng::tensor_parallel_seed(7, r));
  std::sort(seeds.begin(), seeds.end());
  EXPECT_EQ(std::unique(seeds.begin(), seeds.end()), seeds.end());
  EXPECT_NE(tp::TensorParallelRng::tensor_parallel_seed(7, 0), uint64_t(7));
}

TEST(TensorParallelTest, PaddedVocabSizeMatchesConfigPolicy) {
  EXPECT_EQ(tp::padded_vocab_size(50257, 1, 1), 50257);
  EXPECT_EQ(tp::padded_vocab_size(50257, 2, 1), 50258);
  EXPECT_EQ(tp::padded_vocab_size(50257, 4, 128), 50304);  // lcm(128, 4) = 128
  EXPECT_EQ(tp::padded_vocab_size(50257, 3, 128), 50304);  // lcm = 384 and 384 * 131 = 50304
  EXPECT_EQ(tp::padded_vocab_size(50257, 3, 1), 50259);
  EXPECT_EQ(tp::padded_vocab_size(50305, 3, 128), 50688);  // next multiple of 384
  tp::VocabPartition p = tp::VocabPartition::make(11, 4, 3);
  EXPECT_EQ(p.padded_size, 12);
  EXPECT_EQ(p.start, 9);
  EXPECT_EQ(p.end, 12);
}

TEST(TensorParallelTest, BadShapesRaiseValueErrors) {
  run_fake_ranks(
      4,
      [](Communicator& c) {
        EXPECT_THROW(tp::ColumnParallelLinear(8, 6, c), ValueError);  // 6 % 4 != 0
        EXPECT_THROW(tp::RowParallelLinear(6, 8, c), ValueError);
        tp::ColumnParallelLinear fc(8, 12, c);
        EXPECT_THROW(fc.forward(Tensor::zeros({2, 7})), ValueError);
        tp::VocabPartition part = tp::VocabPartition::make(10, 4, c.rank());
        tp::VocabParallelEmbedding emb(part, 3, c);
        EXPECT_THROW(emb.forward(Tensor::from_vector<int64_t>({10}, {1})),
                     ValueError);  // id >= vocab
        Tensor logits = Tensor::zeros({1, part.local_size()});
        EXPECT_THROW(tp::vocab_parallel_cross_entropy(
                         logits, Tensor::from_vector<int64_t>({11}, {1}), part, c),
                     ValueError);
      },
      opts());
}

}  // namespace
}  // namespace loom

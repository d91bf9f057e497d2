// LossScaler over two Fake ranks (threads sharing one in-process world): when only one rank's
// gradients overflow, the max all-reduce of the found-inf flag makes both ranks skip the step and
// back off identically, and both step again once every rank is finite.
#include <array>
#include <limits>

#include <gtest/gtest.h>

#include "optim/LossScaler.h"
#include "optim/SGD.h"
#include "parallel/comm/FakeCommunicator.h"

namespace loom::optim {
namespace {

TEST(LossScalerRanksTest, OneRankOverflowsEveryRankSkips) {
  constexpr int kSteps = 4;
  // rank 1 overflows at step 1 only; rank 0 never does.
  std::array<std::array<bool, kSteps>, 2> stepped{};
  std::array<std::array<double, kSteps>, 2> scales{};
  std::array<float, 2> final_param{};
  run_fake_ranks(2, [&](Communicator& comm) {
    const int r = comm.rank();
    LossScaler scaler({.init_scale = 1024.0, .growth_interval = 2},
                      [&comm](const Tensor& f) { comm.all_reduce(f, ReduceOp::Max); });
    Tensor p = Tensor::zeros({2}).set_requires_grad(true);
    SGD opt({{"p", p}}, {.lr = 1.0});
    for (int step = 0; step < kSteps; ++step) {
      double bad = (r == 1 && step == 1) ? std::numeric_limits<double>::infinity() : 0.0;
      // Gradient = scale * (1, bad): unscales to (1, bad) on every rank.
      p.set_grad(Tensor::from_vector(std::vector<double>{scaler.scale(), bad}, {2}).to(DType::F32));
      stepped[size_t(r)][size_t(step)] = scaler.step(opt);
      scales[size_t(r)][size_t(step)] = scaler.scale();
    }
    final_param[size_t(r)] = p.to_vector<float>()[0];
  });
  const std::array<bool, kSteps> want_stepped = {true, false, true, true};
  // step 0 good (tracker 1), step 1 overflow -> 512, steps 2-3 good -> growth to 1024 at step 3.
  const std::array<double, kSteps> want_scales = {1024.0, 512.0, 512.0, 1024.0};
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(stepped[size_t(r)], want_stepped) << "rank " << r;
    EXPECT_EQ(scales[size_t(r)], want_scales) << "rank " << r;
    // Three applied steps of lr * 1 each (exact in f32).
    EXPECT_EQ(final_param[size_t(r)], -3.0f) << "rank " << r;
  }
}

}  // namespace
}  // namespace loom::optim

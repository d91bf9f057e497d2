// GradBucketReducer on Fake ranks (threads): bucket layout (reverse registration order, size
// limit), averaged gradients, all-reduces started from the autograd hooks during backward, and
// gradient accumulation without communication on the no_sync micro-batches, and gradients that
// live in the buckets (one copy, zeroed in place between steps).
#include "parallel/data/GradBucketReducer.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/ops/Elementwise.h"
#include "core/ops/Reduction.h"
#include "parallel/comm/FakeCommunicator.h"

namespace loom {
namespace {

// Four f32 parameters of 8, 4, 6 and 2 elements (32, 16, 24, 8 bytes).
std::vector<Tensor> make_params() {
  std::vector<Tensor> ps;
  for (int64_t n : {8, 4, 6, 2}) ps.push_back(Tensor::zeros({n}).set_requires_grad(true));
  return ps;
}

// loss = sum_i sum(p_i * x_i) with x_i = (rank + 1) * (i + 1) * scale: grad p_i = x_i.
void backward_once(const std::vector<Tensor>& ps, int rank, double scale) {
  Tensor loss;
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor x = Tensor::full(ps[i].shape(), double(rank + 1) * double(i + 1) * scale);
    Tensor term = sum(ps[i] * x);
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
}

TEST(GradBucketReducer, BucketsInReverseOrderUpToTheSizeLimit) {
  run_fake_ranks(1, [](Communicator& c) {
    std::vector<Tensor> ps = make_params();
    GradBucketReducer r(ps, c, {.bucket_bytes = 24});
    // Reverse order 3 (8 B), 2 (24 B) -> 32 B >= 24 closes; 1 (16 B), 0 (32 B) -> closes.
    ASSERT_EQ(r.num_buckets(), 2);
    EXPECT_EQ(r.bucket_params(0), (std::vector<int>{3, 2}));
    EXPECT_EQ(r.bucket_params(1), (std::vector<int>{1, 0}));
  });
}

TEST(GradBucketReducer, AveragesAndStartsDuringBackward) {
  run_fake_ranks(3, [](Communicator& c) {
    std::vector<Tensor> ps = make_params();
    GradBucketReducer r(ps, c, {.bucket_bytes = 16});
    const int64_t seq0 = c.next_seq();
    backward_once(ps, c.rank(), 1.0);
    // Every bucket's all-reduce was issued by the hooks, before backward returned.
    EXPECT_EQ(c.next_seq() - seq0, r.num_buckets());
    r.finish();
    for (size_t i = 0; i < ps.size(); ++i) {
      // mean over ranks of (rank+1)*(i+1) = 2*(i+1); small integers: exact in f32.
      for (float g : ps[i].grad().to_vector<float>()) EXPECT_EQ(g, 2.0f * float(i + 1));
    }
  });
}

TEST(GradBucketReducer, NoSyncMicroBatchesDoNotCommunicate) {
  run_fake_ranks(2, [](Communicator& c) {
    std::vector<Tensor> ps = make_params();
    GradBucketReducer r(ps, c);
    const int64_t seq0 = c.next_seq();
    r.set_sync(false);
    backward_once(ps, c.rank(), 1.0);
    EXPECT_EQ(c.next_seq(), seq0);  // nothing issued on the accumulation micro-batch
    r.set_sync(true);
    backward_once(ps, c.rank(), 2.0);
    r.finish();
    EXPECT_EQ(c.next_seq() - seq0, r.num_buckets());
    for (size_t i = 0; i < ps.size(); ++i) {
      // local grad = (rank+1)*(i+1)*(1+2); mean over ranks 1,2 -> 1.5*3*(i+1) = 4.5*(i+1), exact.
      for (float g : ps[i].grad().to_vector<float>()) EXPECT_EQ(g, 4.5f * float(i + 1));
    }
  });
}

// Every gradient moves into its bucket as soon as backward makes it: later micro-batches
// accumulate there and the all-reduce runs on it, so no second copy of the gradients exists. The
// optimizer's zero_grad drops the views between steps (the buffer stays); a parameter without a
// gradient gets zeros, not the last step's values; a grad other code set is copied into its slot.
TEST(GradBucketReducer, GradientsLiveInTheBucketsAcrossSteps) {
  run_fake_ranks(2, [](Communicator& c) {
    std::vector<Tensor> ps = make_params();
    GradBucketReducer r(ps, c, {.bucket_bytes = 24});  // buckets {3, 2} and {1, 0}
    auto storage = [&](size_t i) { return ps[i].grad().storage().get(); };
    for (int step = 1; step <= 2; ++step) {
      for (const Tensor& p : ps) EXPECT_FALSE(p.grad().defined());
      r.set_sync(false);
      backward_once(ps, c.rank(), double(step));
      EXPECT_EQ(storage(3), storage(2));
      EXPECT_EQ(storage(1), storage(0));
      EXPECT_NE(storage(0), storage(2));
      const std::vector<const void*> before = {storage(0), storage(1), storage(2), storage(3)};
      r.set_sync(true);
      backward_once(ps, c.rank(), double(step));
      r.finish();
      for (size_t i = 0; i < ps.size(); ++i) {
        EXPECT_EQ(storage(i), before[i]) << "step " << step;
        // mean over ranks 1, 2 of (rank+1)*(i+1)*2*step = 3*(i+1)*step, exact.
        for (float g : ps[i].grad().to_vector<float>())
          EXPECT_EQ(g, 3.0f * float(i + 1) * float(step)) << "step " << step;
      }
      for (const Tensor& p : ps) p.set_grad(Tensor());  // the optimizer's zero_grad
    }
    // Step 3: parameter 0 gets no gradient (zeros, not step 2's), parameter 1 one set by hand.
    Tensor loss = sum(ps[2] * Tensor::full(ps[2].shape(), 1.0)) + sum(ps[3]);
    loss.backward();
    ps[1].set_grad(Tensor::full(ps[1].shape(), double(c.rank() + 1)));
    r.finish();
    for (float g : ps[0].grad().to_vector<float>()) EXPECT_EQ(g, 0.0f);
    for (float g : ps[1].grad().to_vector<float>()) EXPECT_EQ(g, 1.5f);
    EXPECT_EQ(storage(1), storage(0));
  });
}

TEST(GradBucketReducer, FinishWithoutSyncIsAnError) {
  run_fake_ranks(1, [](Communicator& c) {
    std::vector<Tensor> ps = make_params();
    GradBucketReducer r(ps, c);
    r.set_sync(false);
    EXPECT_THROW(r.finish(), ValueError);
  });
}

}  // namespace
}  // namespace loom

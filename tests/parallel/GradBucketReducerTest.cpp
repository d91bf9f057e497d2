// GradBucketReducer on Fake ranks (threads): bucket layout (reverse registration order, size
// limit), averaged gradients, all-reduces started from the autograd hooks during backward, and
// gradient accumulation without communication on the no_sync micro-batches.
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

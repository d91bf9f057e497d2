// GradBucketReducer: data-parallel gradient averaging that overlaps communication with backward.
// Parameters are grouped into buckets (~25 MB, reverse registration order, which is roughly the
// order backward finishes them). The gradients live in the buckets: a post-accumulate-grad hook
// on every parameter moves its new gradient into its slot of the bucket's flat buffer and makes
// the grad a view of that slot, so later micro-batches accumulate in place and no second copy of
// the gradients exists (Megatron's contiguous gradient buffer, DDP's gradient_as_bucket_view).
// The hooks also count finished gradients; when a bucket's last gradient is final its all-reduce
// starts in place (asynchronously), while backward goes on. Buckets start in index order on every
// rank, so the collective sequence is identical across ranks. finish() waits for all of them and
// scales the sums to the mean. With gradient accumulation, set_sync(false) on all but the last
// micro-batch: the hooks then start no communication. Between steps the optimizer's zero_grad()
// drops the views as usual; the buffers stay.
//   GradBucketReducer r(model.parameters(), dp_comm);
//   r.set_sync(last_micro); loss.backward(); ... r.finish(); opt.step(); opt.zero_grad();
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/comm/Communicator.h"

namespace loom {

struct ReducerOptions {
  int64_t bucket_bytes = int64_t(25) << 20;  // target bucket size (a bigger parameter: own bucket)
};

class GradBucketReducer {
 public:
  // `params`: leaf tensors in registration order (same on every rank). Registers one hook each.
  GradBucketReducer(std::vector<Tensor> params, Communicator& dp, ReducerOptions options = {});
  ~GradBucketReducer();
  GradBucketReducer(const GradBucketReducer&) = delete;
  GradBucketReducer& operator=(const GradBucketReducer&) = delete;

  // true (default): the next backward's final gradients are reduced; false: hooks do nothing.
  void set_sync(bool on) { sync_ = on; }
  bool sync() const { return sync_; }
  // Waits for every bucket of this backward (starting any not yet started: a parameter without a
  // gradient contributes zeros and gets one), then sets each grad to the mean over ranks.
  void finish();

  int num_buckets() const { return int(buckets_.size()); }
  // Parameter indices (into `params`) of bucket b, in packing order.
  const std::vector<int>& bucket_params(int b) const { return buckets_[size_t(b)].params; }

 private:
  struct Bucket {
    std::vector<int> params;
    std::vector<int64_t> offsets;  // element offset of each param in `flat`
    Tensor flat;                   // (numel total) in the parameters' dtype: their gradients
    int pending = 0;               // gradients not yet final in this backward
    WorkPtr work;                  // in-flight all-reduce
  };
  void on_grad_ready(int param);
  void launch_ready_buckets();
  void launch(Bucket& b);
  void reset();
  // Makes the grad of bucket b's k-th parameter a view of its slot (zeros when it has none).
  void adopt(Bucket& b, size_t k);

  std::vector<Tensor> params_;
  std::vector<int> bucket_of_;  // param index -> bucket index
  std::vector<int> slot_of_;    // param index -> its place in its bucket's `params`
  std::vector<int> hook_ids_;
  std::vector<Bucket> buckets_;
  std::vector<bool> seen_;  // param index -> grad final in this backward
  Communicator& dp_;
  int next_launch_ = 0;  // buckets start in index order
  bool sync_ = true;
};

}  // namespace loom

// GradBucketReducer (see GradBucketReducer.h): bucket assignment, hook bookkeeping, packing.
#include "parallel/data/GradBucketReducer.h"

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"

namespace loom {

GradBucketReducer::GradBucketReducer(std::vector<Tensor> params, Communicator& dp,
                                     ReducerOptions options)
    : params_(std::move(params)), bucket_of_(params_.size(), -1), slot_of_(params_.size(), -1),
      seen_(params_.size(), false), dp_(dp) {
  LOOM_CHECK(options.bucket_bytes > 0, "GradBucketReducer: expected bucket_bytes > 0, got ",
             options.bucket_bytes);
  // Reverse registration order; a bucket holds one dtype and device and closes once it reaches
  // bucket_bytes.
  int64_t bytes = 0;
  for (int i = int(params_.size()) - 1; i >= 0; --i) {
    const Tensor& p = params_[size_t(i)];
    LOOM_CHECK(p.defined() && p.requires_grad(),
               "GradBucketReducer: expected parameters that require grad, got one that does not "
               "(index ", i, ")");
    bool fresh = buckets_.empty() || bytes >= options.bucket_bytes;
    if (!fresh) {
      const Tensor& first = params_[size_t(buckets_.back().params.front())];
      fresh = first.dtype() != p.dtype() || first.device() != p.device();
    }
    if (fresh) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    int64_t off = b.offsets.empty() ? 0 : b.offsets.back() + params_[size_t(b.params.back())].numel();
    b.params.push_back(i);
    b.offsets.push_back(off);
    bucket_of_[size_t(i)] = int(buckets_.size()) - 1;
    slot_of_[size_t(i)] = int(b.params.size()) - 1;
    bytes += int64_t(p.nbytes());
  }
  for (Bucket& b : buckets_) {
    const Tensor& last = params_[size_t(b.params.back())];
    int64_t n = b.offsets.back() + last.numel();
    b.flat = Tensor::zeros({n}, last.dtype(), last.device());
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    int idx = int(i);
    hook_ids_.push_back(
        params_[i].register_post_accumulate_grad_hook([this, idx](const Tensor&) {
          on_grad_ready(idx);
        }));
  }
  reset();
}

GradBucketReducer::~GradBucketReducer() {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].remove_hook(hook_ids_[i]);
  // In-flight work must finish before the buffers go away; errors were already reported.
  for (Bucket& b : buckets_) {
    if (!b.work) continue;
    try {
      b.work->wait();
    } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): destructor must not throw
    }
  }
}

void GradBucketReducer::reset() {
  for (Bucket& b : buckets_) {
    b.pending = int(b.params.size());
    b.work.reset();
  }
  std::fill(seen_.begin(), seen_.end(), false);
  next_launch_ = 0;
}

void GradBucketReducer::on_grad_ready(int param) {
  Bucket& b = buckets_[size_t(bucket_of_[size_t(param)])];
  adopt(b, size_t(slot_of_[size_t(param)]));
  if (!sync_ || seen_[size_t(param)]) return;
  seen_[size_t(param)] = true;
  b.pending -= 1;
  if (b.pending == 0) launch_ready_buckets();
  // Give the MPI progress engine a chance to move the buckets already in flight.
  for (int i = 0; i < next_launch_; ++i)
    if (buckets_[size_t(i)].work) buckets_[size_t(i)].work->is_completed();
}

void GradBucketReducer::launch_ready_buckets() {
  while (next_launch_ < int(buckets_.size()) && buckets_[size_t(next_launch_)].pending == 0) {
    launch(buckets_[size_t(next_launch_)]);
    ++next_launch_;
  }
}

void GradBucketReducer::adopt(Bucket& b, size_t k) {
  NoGradGuard no_grad;
  const Tensor& p = params_[size_t(b.params[k])];
  Tensor slot = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.shape());
  const Tensor g = p.grad();
  if (g.defined() && g.shares_storage(slot) && g.offset() == slot.offset()) return;
  if (g.defined())
    slot.copy_(g);
  else
    slot.zero_();  // no gradient this step: zeros, not the last step's values
  p.set_grad(slot);
}

void GradBucketReducer::launch(Bucket& b) {
  // A parameter without a gradient, or with one other code set since the hook, gets its slot now.
  for (size_t k = 0; k < b.params.size(); ++k) adopt(b, k);
  b.work = dp_.all_reduce_async(b.flat);
}

void GradBucketReducer::finish() {
  LOOM_CHECK(sync_, "GradBucketReducer::finish: expected sync mode (set_sync(true) before the last "
                    "micro-batch's backward), got no_sync");
  NoGradGuard no_grad;
  for (Bucket& b : buckets_) b.pending = 0;  // unseen parameters contribute zeros
  launch_ready_buckets();
  const double scale = 1.0 / double(dp_.size());
  for (Bucket& b : buckets_) {
    b.work->wait();
    b.flat.mul_(scale);  // the gradients are views of it (mul_ bumps their storage's version)
  }
  reset();
}

}  // namespace loom

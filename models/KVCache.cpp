// KVCache: per-layer key/value buffers for incremental decoding (see KVCache.h).
#include "models/KVCache.h"

#include <algorithm>

#include "core/ops/Indexing.h"
#include "core/util/Check.h"

namespace loom::models {

KVCache::KVCache(int64_t layers, int64_t heads, int64_t head_dim, int64_t batch, int64_t capacity,
                 DType dtype, Device device, std::vector<int64_t> pad)
    : batch_(batch), capacity_(capacity), n_head_(heads), head_dim_(head_dim), dtype_(dtype),
      device_(device), pad_(std::move(pad)) {
  LOOM_CHECK(layers >= 0 && heads >= 1 && head_dim >= 1 && batch >= 1 && capacity >= 1,
             "KVCache: expected layers >= 0 and heads, head_dim, batch, capacity >= 1, got ",
             layers, ", ", heads, ", ", head_dim, ", ", batch, ", ", capacity);
  if (pad_.empty()) pad_.assign(size_t(batch), 0);
  LOOM_CHECK(int64_t(pad_.size()) == batch, "KVCache: expected ", batch,
             " padding values (one per row), got ", pad_.size());
  max_pad_ = *std::max_element(pad_.begin(), pad_.end());
  min_pad_ = *std::min_element(pad_.begin(), pad_.end());
  LOOM_CHECK(min_pad_ >= 0 && max_pad_ < capacity, "KVCache: expected padding in [0, ", capacity,
             ") (capacity), got ", min_pad_, " to ", max_pad_);
  const Shape shape = {batch, n_head_, capacity, head_dim_};
  for (int64_t i = 0; i < layers; ++i) {
    k_.push_back(Tensor::zeros(shape, dtype, device));
    v_.push_back(Tensor::zeros(shape, dtype, device));
  }
}

std::pair<Tensor, Tensor> KVCache::append(int64_t layer, const Tensor& k, const Tensor& v) {
  LOOM_CHECK(layer >= 0 && layer < num_layers(), "KVCache.append: expected layer in [0, ",
             num_layers(), "), got ", layer);
  LOOM_CHECK(k.dim() == 4 && k.shape() == v.shape() && k.size(0) == batch_ &&
                 k.size(1) == n_head_ && k.size(3) == head_dim_,
             "KVCache.append: expected k, v of shape (", batch_, ",", n_head_, ",Tn,", head_dim_,
             "), got ", k.shape(), " and ", v.shape());
  const int64_t n = k.size(2);
  LOOM_CHECK(length_ + n <= capacity_, "KVCache.append: expected at most ", capacity_,
             " positions (capacity), got ", length_, " cached + ", n, " new");
  k_[size_t(layer)].narrow(2, length_, n).copy_(k);
  v_[size_t(layer)].narrow(2, length_, n).copy_(v);
  return {k_[size_t(layer)].narrow(2, 0, length_ + n), v_[size_t(layer)].narrow(2, 0, length_ + n)};
}

void KVCache::advance(int64_t n) {
  LOOM_CHECK(n >= 0 && length_ + n <= capacity_, "KVCache.advance: expected at most ", capacity_,
             " positions (capacity), got ", length_, " + ", n);
  length_ += n;
}

KVCache KVCache::select_rows(const std::vector<int64_t>& rows) const {
  LOOM_CHECK(!rows.empty(), "KVCache.select_rows: expected at least one row, got none");
  std::vector<int64_t> pad;
  for (int64_t r : rows) {
    LOOM_CHECK(r >= 0 && r < batch_, "KVCache.select_rows: expected rows in [0, ", batch_,
               "), got ", r);
    pad.push_back(pad_[size_t(r)]);
  }
  KVCache out(0, n_head_, head_dim_, int64_t(rows.size()), capacity_, dtype_, device_,
              std::move(pad));
  const Tensor index = Tensor::from_vector(rows, {int64_t(rows.size())}).to(device_);
  for (size_t i = 0; i < k_.size(); ++i) {
    out.k_.push_back(index_select(k_[i], 0, index));
    out.v_.push_back(index_select(v_[i], 0, index));
  }
  out.length_ = length_;
  return out;
}

}  // namespace loom::models

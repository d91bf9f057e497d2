// KVCache: per-layer key/value buffers for incremental decoding (see KVCache.h).
#include "models/KVCache.h"

#include "core/util/Check.h"

namespace loom::models {

KVCache::KVCache(int64_t layers, int64_t heads, int64_t head_dim, int64_t batch, int64_t capacity,
                 DType dtype, Device device)
    : batch_(batch), capacity_(capacity), n_head_(heads), head_dim_(head_dim), dtype_(dtype),
      device_(device) {
  LOOM_CHECK(layers >= 0 && heads >= 1 && head_dim >= 1 && batch >= 1 && capacity >= 1,
             "KVCache: expected layers >= 0 and heads, head_dim, batch, capacity >= 1, got ",
             layers, ", ", heads, ", ", head_dim, ", ", batch, ", ", capacity);
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

}  // namespace loom::models

// KVCache: the keys and values of every layer for the tokens a GPT has already seen, so that
// generation feeds only the new tokens through the model (GPT::forward_cached) instead of the
// whole sequence each step. Each layer owns k and v buffers (B,H,capacity,D), allocated once;
// append() writes the new tokens' k/v at [length, length+Tn) and advance() commits them after the
// last layer. Rows may hold prompts of different lengths, left-padded so that they all end at the
// same slot: row b's first pad[b] slots are padding, so slot t holds its position t - pad[b]
// (GPT::forward_cached masks the padding). select_rows() copies rows out (to share a prefilled
// prompt between its samples, or to drop finished rows). Inference only: never seen by autograd.
//   KVCache cache = model.new_cache(/*batch=*/2, /*capacity=*/64);
//   Tensor logits = model.forward_cached(prompt, cache);        // prompt (2,T): logits (2,T,V)
//   logits = model.forward_cached(next_ids, cache);             // next_ids (2,1): (2,1,V)
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"
#include "models/GPTConfig.h"

namespace loom::models {

class KVCache {
 public:
  // `layers` layers of `heads` heads of head_dim (this rank's blocks and heads: GPT::new_cache()),
  // for `batch` rows and up to `capacity` slots; pad (batch values >= 0, or empty = all 0) the
  // left padding of each row.
  KVCache(int64_t layers, int64_t heads, int64_t head_dim, int64_t batch, int64_t capacity,
          DType dtype = DType::F32, Device device = Device::cpu(),
          std::vector<int64_t> pad = {});

  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }  // slots committed so far (the next slot)
  int64_t num_layers() const { return int64_t(k_.size()); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  // Left padding per row (batch values); row b's token in slot t is at position t - pad[b].
  const std::vector<int64_t>& padding() const { return pad_; }
  bool padded() const { return max_pad_ > 0; }
  int64_t max_pad() const { return max_pad_; }
  int64_t min_pad() const { return min_pad_; }

  // k, v (B,H,Tn,D) of `layer` for the positions [length, length+Tn): copies them into the
  // buffers and returns views of every cached position (B,H,length+Tn,D). Throws ValueError when
  // the cache would overflow or the shapes disagree.
  std::pair<Tensor, Tensor> append(int64_t layer, const Tensor& k, const Tensor& v);
  // Commits n new positions (call once per forward, after every layer appended them).
  void advance(int64_t n);
  // Forgets every position (the buffers are kept for reuse).
  void reset() { length_ = 0; }
  // A cache whose row i is a copy of row rows[i] of this one (cached slots and padding; rows may
  // repeat), with the same length and capacity. Throws ValueError for an empty list or a row out
  // of range.
  KVCache select_rows(const std::vector<int64_t>& rows) const;

 private:
  int64_t batch_, capacity_, n_head_, head_dim_;  // n_head_: heads of this rank
  DType dtype_;
  Device device_;
  std::vector<Tensor> k_, v_;  // per layer (B,H,capacity,D)
  int64_t length_ = 0;
  std::vector<int64_t> pad_;  // (B)
  int64_t max_pad_ = 0, min_pad_ = 0;
};

}  // namespace loom::models

// DataLoader: batches of (inputs, targets) int64 tensors of shape (B,T) for language-model
// pretraining, from a TokenDataset. targets = inputs shifted by one token.
//
// Windows: window w is tokens [w*T, w*T + T + 1), w in [0, (n_tokens - 1) / T), so every token
// is a target at most once per epoch. Order: per epoch a permutation of all windows, a
// Fisher-Yates shuffle whose draw for step i is Philox4x32-10 with key=seed, counter=(i, epoch),
// mapped to [0, i] by the 64x64->128-bit multiply-shift (no std::shuffle / std::*_distribution,
// whose results vary between standard libraries); shuffle=false keeps windows in order.
// Sharding: rank r of `world` takes the windows at permuted positions p with p % world == r, so
// per epoch the ranks' windows partition all windows. drop_last=true (training) keeps only
// floor(n_windows / world / B) full batches per rank, the same count on every rank;
// drop_last=false yields every window of the rank (the last batch may be short).
//
//   DataLoader dl(std::make_shared<TokenDataset>("train.h5"), {.batch_size = 8, .seq_len = 1024});
//   dl.check_vocab(model_vocab);
//   Batch b = dl.next();          // b.inputs, b.targets: I64 (8,1024) on the CPU
//   LoaderState s = dl.state();   // store in the checkpoint; dl.set_state(s) resumes exactly
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor/Tensor.h"
#include "data/TokenDataset.h"

namespace loom::data {

struct DataLoaderOptions {
  int64_t batch_size = 1;  // B
  int64_t seq_len = 1024;  // T
  uint64_t seed = 0;
  bool shuffle = true;
  int rank = 0;
  int world = 1;
  bool drop_last = true;
};

struct Batch {
  Tensor inputs;   // I64 (rows, T), rows == B except possibly the last batch with drop_last=false
  Tensor targets;  // I64 (rows, T)
  int64_t epoch = 0;
};

// Where the loader is: the next batch is the one at `position` (in windows) of epoch `epoch`.
struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;
  bool operator==(const LoaderState&) const = default;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const TokenDataset> dataset, DataLoaderOptions opts);

  Batch next();

  int64_t num_windows() const { return n_windows_; }     // over all ranks
  int64_t windows_per_epoch() const { return per_rank_; }  // this rank, after drop_last
  int64_t batches_per_epoch() const;                       // this rank
  // This rank's window indices for `epoch`, in the order they are served.
  std::vector<int64_t> epoch_windows(int64_t epoch) const;

  LoaderState state() const { return state_; }
  void set_state(const LoaderState& s);  // ValueError if out of range
  // ValueError unless every token id fits the model's embedding (dataset vocab <= model vocab).
  void check_vocab(int64_t model_vocab_size) const;
  const DataLoaderOptions& options() const { return opts_; }

 private:
  std::shared_ptr<const TokenDataset> ds_;
  DataLoaderOptions opts_;
  int64_t n_windows_ = 0, per_rank_ = 0;
  LoaderState state_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> windows_;  // epoch_windows(cached_epoch_)
};

}  // namespace loom::data

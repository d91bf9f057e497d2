// Deterministic, shardable, resumable LM batch loader (see DataLoader.h).
#include "data/DataLoader.h"

#include <numeric>

#include "core/random/Philox.h"
#include "core/util/Check.h"

namespace loom::data {
namespace {

// Uniform integer in [0, bound) from Philox(key=seed, counter=(i, epoch)) by multiply-shift.
uint64_t draw(uint64_t seed, int64_t epoch, int64_t i, uint64_t bound) {
  philox::U4 r = philox::philox4x32(uint32_t(uint64_t(i)), uint32_t(uint64_t(i) >> 32),
                                    uint32_t(uint64_t(epoch)), uint32_t(uint64_t(epoch) >> 32),
                                    uint32_t(seed), uint32_t(seed >> 32));
  uint64_t x = (uint64_t(r.x[0]) << 32) | r.x[1];
  return uint64_t((static_cast<unsigned __int128>(x) * bound) >> 64);
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const TokenDataset> dataset, DataLoaderOptions opts)
    : ds_(std::move(dataset)), opts_(opts) {
  LOOM_CHECK(ds_ != nullptr, "DataLoader: expected a dataset, got null");
  LOOM_CHECK(opts_.batch_size > 0 && opts_.seq_len > 0, "DataLoader: expected batch_size > 0 and "
             "seq_len > 0, got ", opts_.batch_size, " and ", opts_.seq_len);
  LOOM_CHECK(opts_.world > 0 && opts_.rank >= 0 && opts_.rank < opts_.world,
             "DataLoader: expected 0 <= rank < world, got rank ", opts_.rank, ", world ",
             opts_.world);
  n_windows_ = ds_->size() > 0 ? (ds_->size() - 1) / opts_.seq_len : 0;
  const int64_t w = opts_.world, r = opts_.rank;
  if (opts_.drop_last) {
    per_rank_ = (n_windows_ / w) / opts_.batch_size * opts_.batch_size;
  } else {
    per_rank_ = n_windows_ / w + (r < n_windows_ % w ? 1 : 0);
  }
  LOOM_CHECK(per_rank_ > 0, "DataLoader: dataset '", ds_->path(), "' has ", ds_->size(),
             " tokens = ", n_windows_, " windows of seq_len+1=", opts_.seq_len + 1,
             "; expected at least world*batch_size = ", w * opts_.batch_size, " windows");
}

int64_t DataLoader::batches_per_epoch() const {
  return (per_rank_ + opts_.batch_size - 1) / opts_.batch_size;
}

std::vector<int64_t> DataLoader::epoch_windows(int64_t epoch) const {
  std::vector<int64_t> perm(static_cast<size_t>(n_windows_));
  std::iota(perm.begin(), perm.end(), int64_t(0));
  if (opts_.shuffle) {
    for (int64_t i = n_windows_ - 1; i > 0; --i) {
      int64_t j = int64_t(draw(opts_.seed, epoch, i, uint64_t(i) + 1));
      std::swap(perm[size_t(i)], perm[size_t(j)]);
    }
  }
  std::vector<int64_t> mine;
  mine.reserve(size_t(per_rank_));
  for (int64_t p = opts_.rank; p < n_windows_ && int64_t(mine.size()) < per_rank_;
       p += opts_.world)
    mine.push_back(perm[size_t(p)]);
  return mine;
}

Batch DataLoader::next() {
  if (state_.position >= per_rank_) {
    ++state_.epoch;
    state_.position = 0;
  }
  if (cached_epoch_ != state_.epoch) {
    windows_ = epoch_windows(state_.epoch);
    cached_epoch_ = state_.epoch;
  }
  const int64_t T = opts_.seq_len;
  const int64_t rows = std::min(opts_.batch_size, per_rank_ - state_.position);
  Batch b;
  b.epoch = state_.epoch;
  b.inputs = Tensor::empty({rows, T}, DType::I64);
  b.targets = Tensor::empty({rows, T}, DType::I64);
  int64_t* x = b.inputs.data<int64_t>();
  int64_t* y = b.targets.data<int64_t>();
  std::vector<int64_t> buf(size_t(T) + 1);
  for (int64_t i = 0; i < rows; ++i) {
    int64_t w = windows_[size_t(state_.position + i)];
    ds_->read(w * T, T + 1, buf.data());
    std::copy(buf.begin(), buf.end() - 1, x + i * T);
    std::copy(buf.begin() + 1, buf.end(), y + i * T);
  }
  state_.position += rows;
  return b;
}

void DataLoader::set_state(const LoaderState& s) {
  LOOM_CHECK(s.epoch >= 0 && s.position >= 0 && s.position <= per_rank_,
             "DataLoader.set_state: expected epoch >= 0 and position in [0, ", per_rank_,
             "], got epoch ", s.epoch, ", position ", s.position);
  state_ = s;
}

void DataLoader::check_vocab(int64_t model_vocab_size) const {
  LOOM_CHECK(ds_->vocab_size() <= model_vocab_size, "DataLoader: dataset '", ds_->path(),
             "' has vocab_size ", ds_->vocab_size(), " but the model's vocab_size is ",
             model_vocab_size, "; expected dataset vocab_size <= model vocab_size");
}

}  // namespace loom::data

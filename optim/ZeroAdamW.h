// ZeroAdamW: ZeRO stage 1 for AdamW. The parameters are laid out in one flat index space (optimizer
// order, padded to a multiple of dp); DP rank r owns elements [r*S, (r+1)*S) and keeps AdamW's
// moments only for those. Each step: reduce-scatter the local gradients (each rank receives the
// rank-sum of its shard, then scales by 1/dp), the global gradient norm from the shards (one f64
// all-reduce) with optional clipping, the AdamW update of the local shard (optim::AdamW on views of
// the shard, so the math is exactly the unsharded optimizer's), and an all-gather of the updated
// parameters. gather_states()/load_states() convert between the sharded state and the logical
// per-parameter state, so a checkpoint saved at one dp size loads at any other.
//   ZeroAdamW opt(make_decay_groups(...), adamw_options, grid.dp_group());
//   loss.backward(); double norm = opt.step(/*max_norm=*/1.0); opt.zero_grad();
#pragma once

#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "optim/AdamW.h"
#include "parallel/comm/Communicator.h"

namespace loom {

// Under tensor / pipeline parallelism each DP replica's model is spread over TP x PP ranks: the
// global gradient norm then sums the DP shards' squares, counting only the parameters this rank
// owns for the norm (each logical element once), and adds them up over the replica's
// `model_parallel` group as well.
struct ZeroNormOptions {
  Communicator* model_parallel = nullptr;  // null: the DP group holds the whole model
  std::set<std::string> not_counted;        // parameters another rank counts (replicas, tied copy)
};

class ZeroAdamW {
 public:
  // Throws ValueError for parameters that are not all of one dtype and device.
  ZeroAdamW(std::vector<optim::ParamGroup> groups, const optim::AdamWOptions& options,
            Communicator& dp, ZeroNormOptions norm = {});
  ~ZeroAdamW();

  // Collective over dp. Returns the global gradient norm before clipping; max_norm <= 0: no clip.
  double step(double max_norm);
  void zero_grad();
  void set_lr(double lr);
  int64_t step_count() const { return step_count_; }

  // Collective: the logical per-parameter state (full exp_avg / exp_avg_sq) on every rank.
  std::map<std::string, optim::ParamState> gather_states();
  // Takes this rank's shard of a logical state (every parameter must be present).
  void load_states(const std::map<std::string, optim::ParamState>& states, int64_t step_count);

  int64_t shard_size() const { return shard_; }
  int64_t total_size() const { return total_; }

 private:
  struct Slot {
    std::string name;
    Tensor param;
    int64_t offset = 0;  // in the flat space
    int group = 0;
  };
  void pack_grads();
  double clip_shard(double max_norm);
  void scatter_params();

  Communicator& dp_;
  ZeroNormOptions norm_;
  Tensor norm_mask_;  // (shard) 1 where the element counts in the norm; undefined: all count
  std::vector<Slot> slots_;
  std::vector<optim::ParamGroup> groups_;
  int64_t total_ = 0, shard_ = 0, lo_ = 0;
  Tensor flat_grad_, grad_shard_, param_shard_, flat_param_, m_shard_, v_shard_;
  std::map<std::string, int64_t> shard_offset_;  // local parameter view -> offset in the shard
  std::unique_ptr<optim::AdamW> local_;  // over views of param_shard_; null when the shard is empty
  int64_t step_count_ = 0;
};

}  // namespace loom

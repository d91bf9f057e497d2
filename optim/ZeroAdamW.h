// ZeroAdamW: ZeRO stage 1 for AdamW, an optim::Optimizer like the others. The parameters are laid
// out in one flat index space (optimizer order, padded to a multiple of dp); DP rank r owns
// elements [r*S, (r+1)*S) and keeps AdamW's moments only for those (1/dp of the state). Each step
// takes the gradients as the trainer's gradient sync left them (averaged over the DP group,
// clipped), runs optim::AdamW on views of the owned elements of the parameters and gradients
// themselves (so the math is exactly the unsharded optimizer's, and no shard of either is copied)
// and all-gathers the updated parameters, in rounds of at most gather_chunk elements per rank
// straight into the parameters (no second copy of the model). export_states()/import_states()
// convert between the sharded state and the logical per-parameter state, so a checkpoint saved at
// one dp size loads at any other.
//   ZeroAdamW opt(make_decay_groups(...), adamw_options, grid.dp_group());
//   sync.finish(); sync.clip(1.0); opt.step(); opt.zero_grad();
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "optim/AdamW.h"
#include "parallel/comm/Communicator.h"

namespace loom::optim {

// Elements of its shard each rank contributes to one all-gather round of ZeroAdamW::step: the
// round's buffers hold dp + 1 times as many (16 MiB per rank in f32).
inline constexpr int64_t kZeroGatherChunk = int64_t(1) << 22;

class ZeroAdamW : public Optimizer {
 public:
  // Throws ValueError for parameters that are not all of one dtype and device, or gather_chunk < 1.
  ZeroAdamW(std::vector<ParamGroup> groups, const AdamWOptions& options, Communicator& dp,
            int64_t gather_chunk = kZeroGatherChunk);
  ~ZeroAdamW() override;

  // Collective over dp: updates this rank's shard, then all-gathers every parameter.
  void step() override;
  std::vector<std::string> state_keys() const override { return {"exp_avg", "exp_avg_sq"}; }
  // Collective over dp: the logical moments of the parameters whose first element is in this
  // rank's shard (gathered here: this rank saves them, so a save holds about 2/dp of the state
  // beyond the shards on each rank); the other parameters' steps without buffers.
  std::map<std::string, ParamState> export_states() override;
  bool shards_state() const override { return true; }
  // Takes this rank's shard of a logical state.
  void import_states(std::map<std::string, ParamState> states, int64_t step_count) override;

  int64_t shard_size() const { return shard_; }
  int64_t total_size() const { return total_; }

 private:
  struct Slot {
    std::string name;
    Tensor param;
    int64_t offset = 0;  // in the flat space
  };
  // [a, b): the part of slot s inside this rank's shard (empty when a >= b).
  std::pair<int64_t, int64_t> overlap(const Slot& s) const;
  // Copies `piece`, the flat elements [begin, begin + piece.numel()), into the parameters, or
  // from them (the padding past the last parameter stays as it is).
  void copy_params(const Tensor& piece, int64_t begin, bool to_params);
  // Elements [a, b) of the flat space inside slots_[slot], as a view of `t` (that slot's
  // parameter or gradient).
  Tensor flat_part(const Tensor& t, size_t slot, int64_t a, int64_t b) const;

  Communicator& dp_;
  std::vector<Slot> slots_;
  int64_t total_ = 0, shard_ = 0, lo_ = 0, chunk_ = 0;
  Tensor m_shard_, v_shard_;
  Tensor send_buf_;    // this rank's part of one all-gather round (chunk_ elements)
  Tensor gather_buf_;  // one all-gather round: chunk_ elements from each rank
  std::unique_ptr<AdamW> local_;  // over views of this shard's parts of the parameters; null
                                  // when the shard is empty
  std::vector<size_t> local_slots_;  // local parameter views, in group order -> their slot
  std::vector<size_t> local_source_;  // local group -> its group in groups_
};

}  // namespace loom::optim

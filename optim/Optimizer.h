// Optimizer: the base of AdamW and SGD. It holds named parameters in param groups (each with its
// own lr and weight decay), per-parameter state (step count + named moment tensors, keyed by the
// parameter's name so checkpoints can save and restore it), and zero_grad. step() runs under
// NoGradGuard and updates parameters in place.
//   AdamW opt(model.named_parameters(), {.lr = 6e-4, .weight_decay = 0.1});
//   loss.backward(); clip_grad_norm(model.parameters(), 1.0);
//   opt.set_lr(schedule.lr_at(step)); opt.step(); opt.zero_grad();
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::optim {

using NamedParam = std::pair<std::string, Tensor>;

struct ParamGroup {
  std::vector<NamedParam> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

// Per-parameter optimizer state: how many updates it received and its buffers by key
// ("exp_avg", "exp_avg_sq" for AdamW; "momentum_buffer" for SGD).
struct ParamState {
  int64_t step = 0;
  std::map<std::string, Tensor> buffers;
};

// Decides whether a parameter gets weight decay. The default decays matrices (dim >= 2) except
// embeddings: biases and LayerNorm weights (1-D) and wte/wpe (and a head tied to wte) do not.
using DecayFilter = std::function<bool(const std::string& name, const Tensor& param)>;
bool default_decay_filter(const std::string& name, const Tensor& param);

// Two groups from one list: those `filter` accepts get `weight_decay`, the rest 0; both get lr.
// Empty groups are dropped.
std::vector<ParamGroup> make_decay_groups(const std::vector<NamedParam>& params, double lr,
                                          double weight_decay,
                                          const DecayFilter& filter = default_decay_filter);

class Optimizer {
 public:
  // Throws ValueError on a duplicate name, a non-floating or non-leaf parameter.
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient (parameters without .grad are skipped and
  // their step count does not advance).
  virtual void step() = 0;
  // Drops every parameter's .grad.
  void zero_grad();
  // Sets lr in every group (what an LR schedule calls each step).
  void set_lr(double lr);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // Number of step() calls so far (restorable for resume).
  int64_t step_count() const { return step_count_; }
  void set_step_count(int64_t n) { step_count_ = n; }
  // State of the parameter named `name` (created empty on first use; throws ValueError for a name
  // that is not one of this optimizer's parameters).
  ParamState& state(const std::string& name);
  const std::map<std::string, ParamState>& states() const { return state_; }
  // The state of every parameter as one tensor per buffer with the parameter's shape, for a
  // checkpoint. An optimizer that shards_state() returns the buffers this rank saves (ZeRO-1:
  // collective over its data-parallel group; each parameter's buffers on one rank, the steps on
  // all); the others return every buffer, which DP replicas hold alike.
  virtual std::map<std::string, ParamState> export_states() { return state_; }
  virtual bool shards_state() const { return false; }
  // The buffers a parameter's state holds once it has been updated ("exp_avg", "exp_avg_sq" for
  // AdamW; "momentum_buffer" for SGD with momentum): what a checkpoint must carry for it.
  virtual std::vector<std::string> state_keys() const = 0;
  // Restores what export_states() returned (a parameter missing from `states` starts fresh) and
  // the step count.
  virtual void import_states(std::map<std::string, ParamState> states, int64_t step_count);

 protected:
  std::vector<ParamGroup> groups_;
  std::map<std::string, ParamState> state_;
  int64_t step_count_ = 0;
};

}  // namespace loom::optim

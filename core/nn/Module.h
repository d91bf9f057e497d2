// Module: the small base every model layer derives from. It keeps named parameters and child
// modules in registration order, so named_parameters() yields stable dotted names
// ("blocks.3.attn.qkv.weight") that checkpoints, optimizers and weight conversion key on, and a
// train/eval flag that children follow.
// A parameter is this rank's piece of a logical tensor: its ParamMeta says where the piece lies
// (ShardSpec), whether this rank is the one holder of it that counts (owner) and how it is drawn.
// init_parameters(seed) draws every element from (seed, parameter name, logical element index)
// alone, so one process and every tensor / pipeline layout start from the same logical weights.
//   class Head : public Module {
//    public:
//     Head() { w_ = register_parameter("weight", Tensor::zeros({4, 8}), {.std = 0.02}); }
//    private:
//     Tensor w_;
//   };
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/ShardSpec.h"
#include "core/tensor/Tensor.h"

namespace loom::nn {

using NamedTensor = std::pair<std::string, Tensor>;

enum class Init : uint8_t { Zeros, Ones, Normal };

// How a parameter is laid out over ranks and drawn at initialisation.
struct ParamMeta {
  ShardSpec spec;            // this rank's piece of the logical tensor; unset = the whole tensor
  // Exactly one holder of each logical element over the TP x PP ranks of a replica is the owner:
  // it counts the element in the gradient norm and writes it into checkpoints. Replicated
  // tensors are owned by TP rank 0; the last pipeline stage's copy of a tied table by nobody.
  bool owner = true;
  Init init = Init::Normal;
  double std = 0.02;            // Init::Normal: N(0, std)
  int64_t zero_rows_from = -1;  // logical rows >= this are zero at init (padded vocabulary rows)
  // False for a frozen parameter (LoRA's base weights): no gradient, no optimizer state, not in
  // the gradient norm or in checkpoints of the trained parameters. Module::freeze sets it.
  bool trainable = true;
};

struct Parameter {
  std::string name;  // dotted name from the root module
  Tensor tensor;     // this rank's piece (a trainable leaf)
  ParamMeta meta;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Children are registered by address, so a module can be neither copied nor moved.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its children, depth first in registration order. A tensor
  // registered once appears once (a tied weight is simply not registered twice).
  std::vector<NamedTensor> named_parameters() const;
  std::vector<Parameter> parameter_list() const;  // the same, with each piece's metadata
  std::vector<Tensor> parameters() const;
  // The parameter with this dotted name; throws ValueError listing nothing but the miss.
  Tensor parameter(const std::string& name) const;
  int64_t num_parameters() const;  // elements of the pieces this rank holds

  // Draws every parameter's piece by its ParamMeta (see the file comment), or only those whose
  // name `which` accepts. No autograd.
  void init_parameters(uint64_t seed,
                       const std::function<bool(const std::string& name)>& which = {});

  // Freezes every parameter whose name `which` accepts: requires_grad off, meta.trainable false.
  void freeze(const std::function<bool(const std::string& name)>& which);
  // parameter_list() without the frozen parameters: what optimizers and gradient syncs update.
  std::vector<Parameter> trainable_parameter_list() const;

  // Training mode (dropout on) for this module and all children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Drops every parameter's .grad (so the next backward writes fresh gradients).
  void zero_grad();

 protected:
  // Marks `piece` as a trainable leaf and records it under `name`; returns it for member init.
  // Throws ValueError when piece's shape is not meta.spec's local shape.
  Tensor register_parameter(const std::string& name, Tensor piece, ParamMeta meta = {});
  // Records `child` (which must outlive this module's use of it: make it a member).
  void register_module(const std::string& name, Module& child);

 private:
  struct Entry {
    std::string name;
    Tensor param;            // defined for a parameter entry
    ParamMeta meta;          // parameter entries only
    Module* child = nullptr; // non-null for a child entry
  };
  void collect(const std::string& prefix, std::vector<Parameter>& out) const;
  void freeze_under(const std::string& prefix,
                    const std::function<bool(const std::string& name)>& which);

  std::vector<Entry> entries_;
  bool training_ = true;
};

// Fills `piece` (contiguous, shape meta.spec.local_shape()) of the logical parameter `name` as
// meta says: element e of the logical tensor draws N(0, std) from Philox counter e of a key
// derived from (seed, name), so any split of the tensor gets the same values.
void init_piece(const Tensor& piece, const std::string& name, const ParamMeta& meta,
                uint64_t seed);

}  // namespace loom::nn

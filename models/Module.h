// Module: the small base every model layer derives from. It keeps named parameters and child
// modules in registration order, so named_parameters() yields stable dotted names
// ("blocks.3.attn.qkv.weight") that checkpoints, optimizers and weight conversion key on, and a
// train/eval flag that children follow.
//   class Head : public Module {
//    public:
//     Head() { w_ = register_parameter("weight", Tensor::zeros({4, 8})); }
//    private:
//     Tensor w_;
//   };
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::models {

using NamedTensor = std::pair<std::string, Tensor>;

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
  std::vector<Tensor> parameters() const;
  // The parameter with this dotted name; throws ValueError listing nothing but the miss.
  Tensor parameter(const std::string& name) const;
  int64_t num_parameters() const;

  // Training mode (dropout on) for this module and all children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Drops every parameter's .grad (so the next backward writes fresh gradients).
  void zero_grad();

 protected:
  // Marks `t` as a trainable leaf and records it under `name`; returns it for member init.
  Tensor register_parameter(const std::string& name, Tensor t);
  // Records `child` (which must outlive this module's use of it: make it a member).
  void register_module(const std::string& name, Module& child);

 private:
  struct Entry {
    std::string name;
    Tensor param;            // defined for a parameter entry
    Module* child = nullptr; // non-null for a child entry
  };
  void collect(const std::string& prefix, std::vector<NamedTensor>& out) const;

  std::vector<Entry> entries_;
  bool training_ = true;
};

}  // namespace loom::models

// The autograd graph: a Node is one recorded operation's backward; its edges point to the Nodes
// that produced its inputs (or to the AccumulateGrad node of a leaf). Saved tensors remember the
// storage version at save time, so backward can detect in-place modification.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: this input needs no gradient
  uint32_t input_nr = 0;     // which of fn's grad inputs this edge feeds
  bool valid() const { return fn != nullptr; }
};

// Per-tensor autograd state (lives in TensorImpl::autograd).
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  uint32_t output_nr = 0;         // which output of grad_fn this tensor is
  std::weak_ptr<Node> grad_accumulator;  // leaves only
  std::vector<std::pair<int, std::function<void(const Tensor&)>>> post_accumulate_hooks;
  int next_hook_id = 0;
};

// A tensor held for backward, detached (so no reference cycle through grad_fn) with its version.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // Throws ValueError if the storage was written in place after saving.
  Tensor unpack(const std::string& op_name) const;
  void reset() { data_ = Tensor(); }
  bool defined() const { return data_.defined(); }

 private:
  Tensor data_;
  uint64_t version_ = 0;
};

struct OutputMeta {  // what a missing output gradient is materialised as (zeros)
  Shape shape;
  DType dtype = DType::F32;
  Device device;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node() = default;
  // grads[i] is the gradient w.r.t. output i (materialised: never undefined).
  // Returns one gradient per edge (undefined where that input needs none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Drops saved tensors after a backward without retain_graph.
  virtual void release_saved() {}

  std::vector<Edge> next_edges;
  std::vector<OutputMeta> outputs;
  uint64_t sequence_nr;  // creation order; the engine runs later nodes first
  bool released = false;
  // Runs as soon as it is ready, before any other ready node (AccumulateGrad: a parameter's
  // gradient buffer is freed into .grad at once instead of waiting for the rest of backward).
  bool eager = false;
};

// The sink node of a leaf tensor: adds the incoming gradient to leaf.grad, then runs the leaf's
// post-accumulate hooks (the data-parallel reducer listens there).
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(const Tensor& leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

// Returns the Edge along which a gradient for `t` must flow (empty if t needs no grad).
Edge gradient_edge(const Tensor& t);
AutogradMeta& meta(const Tensor& t);  // creates the meta on first use

}  // namespace loom::autograd

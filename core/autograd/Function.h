// apply<F>: records one differentiable op. F is a struct with
//   static Tensor forward(Ctx& ctx, <args...>);              // or std::vector<Tensor> for many outputs
//   static std::vector<Tensor> backward(Ctx& ctx, std::vector<Tensor> grads);  // one per tensor input
//   static constexpr const char* kName = "GeluBackward";
// Tensor arguments (and std::vector<Tensor> arguments, e.g. for cat) are the differentiable inputs,
// in order. forward runs with grad mode off; a Node is recorded only if grad mode is on and some
// input requires grad. Usage:
//   inline Tensor gelu(const Tensor& x) { return autograd::apply<GeluFn>(x); }
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"

namespace loom::autograd {

// What forward leaves for backward.
class Ctx {
 public:
  explicit Ctx(const char* op_name) : op_name_(op_name) {}
  // Saves tensors for backward (detached; version-checked on unpack). Undefined tensors allowed.
  template <class... Ts>
  void save(const Ts&... ts) {
    (saved_.emplace_back(ts), ...);
  }
  Tensor saved(size_t i) const;
  size_t num_saved() const { return saved_.size(); }
  void release() { saved_.clear(); }
  // needs_input_grad[i]: whether tensor input i needs a gradient (skip work otherwise).
  bool needs_grad(size_t i) const { return i < needs_input_grad.size() && needs_input_grad[i]; }
  const char* op_name() const { return op_name_; }

  std::vector<bool> needs_input_grad;
  std::vector<int64_t> ints;     // free-form non-tensor state
  std::vector<double> reals;
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;

 private:
  const char* op_name_;
  std::vector<SavedTensor> saved_;
};

template <class F>
class FunctionNode : public Node {
 public:
  FunctionNode() : ctx(F::kName) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    if (released) {
      throw ValueError(std::string("autograd: ") + F::kName +
                       ": trying to backward through the graph a second time (its saved tensors "
                       "were freed); hint: pass retain_graph=true to the first backward");
    }
    return F::backward(ctx, std::move(grads));
  }
  std::string name() const override { return F::kName; }
  void release_saved() override {
    ctx.release();
    released = true;
  }
  Ctx ctx;
};

namespace detail {
inline void collect(std::vector<Tensor>&) {}
template <class A, class... Rest>
void collect(std::vector<Tensor>& out, const A& a, const Rest&... rest) {
  if constexpr (std::is_same_v<std::decay_t<A>, Tensor>) {
    out.push_back(a);
  } else if constexpr (std::is_same_v<std::decay_t<A>, std::vector<Tensor>>) {
    out.insert(out.end(), a.begin(), a.end());
  }
  collect(out, rest...);
}
bool any_requires_grad(const std::vector<Tensor>& ts);
// Wires `node` to `inputs` and marks `outputs` as produced by it (aliasing outputs that are
// existing tensors so their own history is untouched). Returns the (possibly aliased) outputs.
void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
             std::vector<Tensor>& outputs);
}  // namespace detail

template <class F, class... Args>
auto apply(Args&&... args) {
  using Out = decltype(F::forward(std::declval<Ctx&>(), std::forward<Args>(args)...));
  std::vector<Tensor> inputs;
  detail::collect(inputs, args...);
  const bool record = GradMode::is_enabled() && detail::any_requires_grad(inputs);
  if (!record) {
    Ctx ctx(F::kName);
    NoGradGuard guard;
    return F::forward(ctx, std::forward<Args>(args)...);
  }
  auto node = std::make_shared<FunctionNode<F>>();
  node->ctx.needs_input_grad.reserve(inputs.size());
  for (const Tensor& t : inputs) node->ctx.needs_input_grad.push_back(t.defined() && t.requires_grad());
  Out out;
  {
    NoGradGuard guard;
    out = F::forward(node->ctx, std::forward<Args>(args)...);
  }
  if constexpr (std::is_same_v<Out, Tensor>) {
    std::vector<Tensor> outs{out};
    detail::connect(node, inputs, outs);
    return outs[0];
  } else {
    detail::connect(node, inputs, out);
    return out;
  }
}

}  // namespace loom::autograd

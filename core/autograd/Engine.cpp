// Backward engine (see Engine.h). Single-threaded per backward call; nodes run in dependency order,
// ties broken by creation order (latest first).
#include "core/autograd/Engine.h"

#include <queue>
#include <unordered_map>

#include "core/autograd/GradMode.h"
#include "core/autograd/Node.h"
#include "core/ops/Elementwise.h"

namespace loom::autograd {

namespace {
// Priority of ready nodes: eager ones (gradient accumulators) first, then later-created first.
struct LaterFirst {
  bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
    if (a->eager != b->eager) return b->eager;
    return a->sequence_nr < b->sequence_nr;
  }
};

void accumulate(std::vector<Tensor>& buf, uint32_t slot, const Node& target, Tensor g) {
  const OutputMeta& om = target.outputs[slot];
  LOOM_INTERNAL_ASSERT(g.shape() == om.shape, "autograd: ", target.name(), " input ", slot,
                       " expected a gradient of shape ", shape_str(om.shape), ", got ",
                       shape_str(g.shape()));
  if (!buf[slot].defined()) {
    buf[slot] = std::move(g);
    return;
  }
  Tensor& b = buf[slot];
  Tensor add_me = g.dtype() == b.dtype() ? g : g.to(b.dtype());
  // In place when nobody else can see the buffer (it is its storage's only view): no third
  // gradient-sized tensor. Otherwise out of place: b may alias a gradient another edge received.
  const bool sole = b.impl_ptr().use_count() == 1 && b.storage().use_count() == 1 &&
                    b.is_contiguous() && b.shape() == add_me.shape();
  if (sole) {
    b.add_(add_me);
  } else {
    b = add(b, add_me);
  }
}
}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  NoGradGuard no_grad;
  LOOM_INTERNAL_ASSERT(roots.size() == grads.size(), "roots vs grads");
  std::vector<Edge> root_edges;
  for (const Tensor& r : roots) {
    Edge e = gradient_edge(r);
    LOOM_CHECK(e.valid(), "backward: expected a tensor that requires grad (an output of ops on "
               "tensors with requires_grad), got one without grad history");
    root_edges.push_back(e);
  }

  // Count, for every reachable node, how many edges point at it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (const Edge& e : root_edges) {
    if (!seen[e.fn.get()]) {
      seen[e.fn.get()] = true;
      stack.push_back(e.fn.get());
    }
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid()) continue;
      ++deps[e.fn.get()];
      if (!seen[e.fn.get()]) {
        seen[e.fn.get()] = true;
        stack.push_back(e.fn.get());
      }
    }
  }

  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, LaterFirst> ready;
  auto buffer_of = [&](Node* n) -> std::vector<Tensor>& {
    auto& b = buffers[n];
    if (b.empty()) b.resize(n->outputs.size());
    return b;
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    Edge& e = root_edges[i];
    accumulate(buffer_of(e.fn.get()), e.input_nr, *e.fn, grads[i]);
  }
  for (const Edge& e : root_edges) {
    if (deps[e.fn.get()] == 0 && seen[e.fn.get()]) {
      seen[e.fn.get()] = false;  // queue once
      ready.push(e.fn);
    }
  }

  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    std::vector<Tensor> in = std::move(buffer_of(node.get()));
    buffers.erase(node.get());
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].defined()) {
        const OutputMeta& om = node->outputs[i];
        in[i] = Tensor::zeros(om.shape, om.dtype, om.device);
      }
    }
    std::vector<Tensor> out;
    try {
      out = node->apply(std::move(in));
    } catch (Error& e) {
      e.add_context("running backward of " + node->name());
      throw;
    }
    if (!retain_graph) node->release_saved();
    LOOM_INTERNAL_ASSERT(out.empty() || out.size() == node->next_edges.size(), node->name(),
                         " returned ", out.size(), " gradients for ", node->next_edges.size(),
                         " inputs");
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.valid()) continue;
      if (i < out.size() && out[i].defined())
        accumulate(buffer_of(e.fn.get()), e.input_nr, *e.fn, std::move(out[i]));
      if (--deps[e.fn.get()] == 0) ready.push(e.fn);
    }
  }
}

}  // namespace loom::autograd

namespace loom {
void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  Tensor g = grad;
  if (!g.defined()) {
    LOOM_CHECK(numel() == 1, "backward: grad can be omitted only for one-element outputs, got "
               "shape ", shape());
    g = Tensor::ones(shape(), dtype(), device());
  }
  LOOM_CHECK(g.shape() == shape(), "backward: expected grad of shape ", shape(), ", got ",
             g.shape());
  autograd::run_backward({*this}, {g}, retain_graph);
}
}  // namespace loom

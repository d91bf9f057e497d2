// Module bookkeeping: registration, dotted-name traversal, train/eval propagation.
#include "models/Module.h"

#include "core/util/Check.h"

namespace loom::models {

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  LOOM_CHECK(t.defined(), "Module: expected a defined tensor for parameter '", name, "'");
  for (const Entry& e : entries_)
    LOOM_CHECK(e.name != name, "Module: expected a new name, got duplicate '", name, "'");
  t.set_requires_grad(true);
  entries_.push_back(Entry{name, t, nullptr});
  return t;
}

void Module::register_module(const std::string& name, Module& child) {
  for (const Entry& e : entries_)
    LOOM_CHECK(e.name != name, "Module: expected a new name, got duplicate '", name, "'");
  entries_.push_back(Entry{name, Tensor(), &child});
}

void Module::collect(const std::string& prefix, std::vector<NamedTensor>& out) const {
  for (const Entry& e : entries_) {
    if (e.child != nullptr) {
      e.child->collect(prefix + e.name + ".", out);
    } else {
      out.emplace_back(prefix + e.name, e.param);
    }
  }
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

Tensor Module::parameter(const std::string& name) const {
  for (auto& [n, t] : named_parameters())
    if (n == name) return t;
  throw ValueError("Module::parameter: expected the name of a parameter, got '" + name + "'");
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (Entry& e : entries_)
    if (e.child != nullptr) e.child->train(on);
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t.set_grad(Tensor());
}

}  // namespace loom::models

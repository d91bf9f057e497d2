// Optimizer base: validation of the groups, decay-group splitting, state lookup, zero_grad.
#include "optim/Optimizer.h"

#include <set>

#include "core/util/Check.h"

namespace loom::optim {

bool default_decay_filter(const std::string& name, const Tensor& param) {
  if (param.dim() < 2) return false;  // biases, LayerNorm weights and biases
  // Embedding tables: wte (also the LM head when tied), wpe, or anything named *embed*.
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  return !(has("wte.") || has("wpe.") || has("embed"));
}

std::vector<ParamGroup> make_decay_groups(const std::vector<NamedParam>& params, double lr,
                                          double weight_decay, const DecayFilter& filter) {
  ParamGroup decay{{}, lr, weight_decay}, no_decay{{}, lr, 0.0};
  for (const NamedParam& p : params) {
    ParamGroup& g = filter(p.first, p.second) ? decay : no_decay;
    g.params.push_back(p);
  }
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  return groups;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> seen;
  for (const ParamGroup& g : groups_) {
    for (const auto& [name, p] : g.params) {
      LOOM_CHECK(seen.insert(name).second, "Optimizer: expected unique parameter names, got '",
                 name, "' twice");
      LOOM_CHECK(p.defined() && is_floating(p.dtype()),
                 "Optimizer: expected a floating parameter for '", name, "'");
      LOOM_CHECK(p.is_leaf(), "Optimizer: expected a leaf parameter for '", name,
                 "', got the output of an op");
    }
  }
}

void Optimizer::zero_grad() {
  for (ParamGroup& g : groups_)
    for (auto& [name, p] : g.params) p.set_grad(Tensor());
}

void Optimizer::set_lr(double lr) {
  for (ParamGroup& g : groups_) g.lr = lr;
}

ParamState& Optimizer::state(const std::string& name) {
  auto it = state_.find(name);
  if (it != state_.end()) return it->second;
  for (const ParamGroup& g : groups_)
    for (const auto& [n, p] : g.params)
      if (n == name) return state_[name];
  throw ValueError("Optimizer::state: expected the name of an optimized parameter, got '" + name +
                   "'");
}

void Optimizer::import_states(std::map<std::string, ParamState> states, int64_t step_count) {
  for (auto& [name, st] : states) state(name) = std::move(st);
  step_count_ = step_count;
}

}  // namespace loom::optim

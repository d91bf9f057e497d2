// Module bookkeeping: registration, dotted-name traversal, train/eval propagation, and the
// layout-independent initialisation of parameter pieces.
#include "core/nn/Module.h"

#include "core/autograd/GradMode.h"
#include "core/random/Generator.h"
#include "core/util/Check.h"

namespace loom::nn {

namespace {

// splitmix64's finaliser: a bijective 64-bit mix.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The Philox key of parameter `name` under run seed `seed` (FNV-1a of the name, then mixed).
uint64_t parameter_key(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  return mix64(seed ^ mix64(h));
}

}  // namespace

void init_piece(const Tensor& piece, const std::string& name, const ParamMeta& meta,
                uint64_t seed) {
  LOOM_INTERNAL_ASSERT(piece.is_contiguous() && piece.shape() == meta.spec.local_shape(),
                       "init_piece: ", name, " of shape ", piece.shape(), " vs spec ",
                       meta.spec.str());
  NoGradGuard no_grad;
  Tensor t = piece.detach();
  switch (meta.init) {
    case Init::Zeros: t.zero_(); break;
    case Init::Ones: t.fill_(1.0); break;
    case Init::Normal: {
      Tensor flat = t.view({t.numel()});
      const uint64_t key = parameter_key(seed, name);
      for (const ShardRun& r : shard_runs(meta.spec)) {
        Generator gen(key, uint64_t(r.logical));
        flat.narrow(0, r.local, r.length).normal_(gen, 0.0, meta.std);
      }
      break;
    }
  }
  if (meta.zero_rows_from < 0) return;
  // Logical rows >= zero_rows_from: the piece must hold whole rows (whole, or a row range).
  const ShardSpec& s = meta.spec;
  LOOM_INTERNAL_ASSERT(s.view == s.logical && (s.is_whole() || s.dim == 0),
                       "init_piece: zero_rows_from needs a row-range piece, got ", s.str());
  const int64_t first = s.is_whole() ? 0 : s.offset, rows = t.size(0);
  const int64_t from = std::max<int64_t>(meta.zero_rows_from - first, 0);
  if (from < rows) t.narrow(0, from, rows - from).zero_();
}

Tensor Module::register_parameter(const std::string& name, Tensor piece, ParamMeta meta) {
  LOOM_CHECK(piece.defined(), "Module: expected a defined tensor for parameter '", name, "'");
  for (const Entry& e : entries_)
    LOOM_CHECK(e.name != name, "Module: expected a new name, got duplicate '", name, "'");
  if (meta.spec.logical.empty() && meta.spec.is_whole()) meta.spec = ShardSpec::whole(piece.shape());
  LOOM_CHECK(piece.shape() == meta.spec.local_shape(), "Module: parameter '", name,
             "' expected the shape of its piece ", meta.spec.str(), ", got ", piece.shape());
  piece.set_requires_grad(true);
  entries_.push_back(Entry{name, piece, std::move(meta), nullptr});
  return piece;
}

void Module::register_module(const std::string& name, Module& child) {
  for (const Entry& e : entries_)
    LOOM_CHECK(e.name != name, "Module: expected a new name, got duplicate '", name, "'");
  entries_.push_back(Entry{name, Tensor(), ParamMeta{}, &child});
}

void Module::collect(const std::string& prefix, std::vector<Parameter>& out) const {
  for (const Entry& e : entries_) {
    if (e.child != nullptr) {
      e.child->collect(prefix + e.name + ".", out);
    } else {
      out.push_back(Parameter{prefix + e.name, e.param, e.meta});
    }
  }
}

std::vector<Parameter> Module::parameter_list() const {
  std::vector<Parameter> out;
  collect("", out);
  return out;
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  for (Parameter& p : parameter_list()) out.emplace_back(std::move(p.name), std::move(p.tensor));
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (Parameter& p : parameter_list()) out.push_back(std::move(p.tensor));
  return out;
}

Tensor Module::parameter(const std::string& name) const {
  for (auto& [n, t] : named_parameters())
    if (n == name) return t;
  throw ValueError("Module::parameter: expected the name of a parameter, got '" + name + "'");
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Parameter& p : parameter_list()) n += p.tensor.numel();
  return n;
}

void Module::init_parameters(uint64_t seed,
                             const std::function<bool(const std::string& name)>& which) {
  for (const Parameter& p : parameter_list())
    if (!which || which(p.name)) init_piece(p.tensor, p.name, p.meta, seed);
}

void Module::freeze(const std::function<bool(const std::string& name)>& which) {
  freeze_under("", which);
}

void Module::freeze_under(const std::string& prefix,
                          const std::function<bool(const std::string& name)>& which) {
  for (Entry& e : entries_) {
    if (e.child != nullptr) {
      e.child->freeze_under(prefix + e.name + ".", which);
    } else if (which(prefix + e.name)) {
      e.meta.trainable = false;
      e.param.set_requires_grad(false);
      e.param.set_grad(Tensor());
    }
  }
}

std::vector<Parameter> Module::trainable_parameter_list() const {
  std::vector<Parameter> out;
  for (Parameter& p : parameter_list())
    if (p.meta.trainable) out.push_back(std::move(p));
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (Entry& e : entries_)
    if (e.child != nullptr) e.child->train(on);
}

void Module::zero_grad() {
  for (const Parameter& p : parameter_list()) p.tensor.set_grad(Tensor());
}

}  // namespace loom::nn

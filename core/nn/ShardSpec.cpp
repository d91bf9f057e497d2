// ShardSpec (see ShardSpec.h): constructors for the split patterns the parallel layers use, the
// JSON form checkpoints store, the runs a piece is made of, and the copy of a piece out of its
// logical tensor.
#include "core/nn/ShardSpec.h"

#include <nlohmann/json.hpp>

#include "core/autograd/GradMode.h"
#include "core/util/Check.h"

namespace loom {

namespace {


// The piece as a view of `logical` (shape spec.view narrowed along spec.dim).
Tensor piece_view(const Tensor& logical, const ShardSpec& spec) {
  LOOM_CHECK(logical.shape() == spec.logical, "ShardSpec: expected a logical tensor of shape ",
             spec.logical, ", got ", logical.shape());
  if (spec.is_whole()) return logical;
  return logical.view(spec.view).narrow(spec.dim, spec.offset, spec.length);
}

}  // namespace

ShardSpec ShardSpec::whole(const Shape& logical) {
  ShardSpec s;
  s.logical = s.view = logical;
  return s;
}

ShardSpec ShardSpec::rows(const Shape& logical, int64_t stacked, int rank, int size) {
  LOOM_CHECK(!logical.empty() && stacked >= 1 && size >= 1 && rank >= 0 && rank < size &&
                 logical[0] % (stacked * size) == 0,
             "ShardSpec.rows: expected dim 0 of ", logical, " divisible by stacked (", stacked,
             ") * size (", size, ") and 0 <= rank < size, got rank ", rank);
  if (stacked == 1) return split(logical, 0, rank, size);
  ShardSpec s;
  s.logical = logical;
  s.view = {stacked, logical[0] / stacked};
  s.view.insert(s.view.end(), logical.begin() + 1, logical.end());
  s.dim = 1;
  s.length = logical[0] / stacked / size;
  s.offset = s.length * rank;
  return s;
}

ShardSpec ShardSpec::split(const Shape& logical, int dim, int rank, int size) {
  LOOM_CHECK(dim >= 0 && dim < int(logical.size()) && size >= 1 && rank >= 0 && rank < size &&
                 logical[size_t(dim)] % size == 0,
             "ShardSpec.split: expected dim ", dim, " of ", logical, " divisible by ", size,
             " and 0 <= rank < size, got rank ", rank);
  ShardSpec s;
  s.logical = s.view = logical;
  s.dim = dim;
  s.length = logical[size_t(dim)] / size;
  s.offset = s.length * rank;
  return s;
}

ShardSpec ShardSpec::row_range(const Shape& logical, int64_t begin, int64_t end) {
  LOOM_CHECK(!logical.empty() && 0 <= begin && begin <= end && end <= logical[0],
             "ShardSpec.row_range: expected 0 <= begin <= end <= ", logical.empty() ? 0 : logical[0],
             ", got [", begin, ", ", end, ")");
  ShardSpec s;
  s.logical = s.view = logical;
  s.dim = 0;
  s.offset = begin;
  s.length = end - begin;
  return s;
}

Shape ShardSpec::local_shape() const {
  if (is_whole()) return logical;
  if (view == logical) {
    Shape out = logical;
    out[size_t(dim)] = length;
    return out;
  }
  // A stacked row split: the piece is (view[0] * length, rest...) of the rows.
  Shape out = logical;
  out[0] = view[0] * length;
  return out;
}

std::string ShardSpec::str() const {
  if (is_whole()) return shape_str(logical) + " whole";
  std::string s = shape_str(logical);
  if (view != logical) s += " as " + shape_str(view);
  return s + " dim " + std::to_string(dim) + " [" + std::to_string(offset) + ", " +
         std::to_string(offset + length) + ")";
}

std::string ShardSpec::to_json() const {
  nlohmann::json j;
  j["logical"] = logical;
  j["view"] = view;
  j["dim"] = dim;
  j["offset"] = offset;
  j["length"] = length;
  return j.dump();
}

ShardSpec ShardSpec::from_json(const std::string& text, const std::string& where) {
  ShardSpec s;
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    s.logical = j.at("logical").get<Shape>();
    s.view = j.at("view").get<Shape>();
    s.dim = j.at("dim").get<int>();
    s.offset = j.at("offset").get<int64_t>();
    s.length = j.at("length").get<int64_t>();
  } catch (const std::exception& e) {
    throw ValueError(where + ": expected a shard spec {logical, view, dim, offset, length}, got '" +
                     text + "' (" + e.what() + ")");
  }
  const bool ok =
      shape_numel(s.view) == shape_numel(s.logical) && s.dim >= -1 &&
      s.dim < int(s.view.size()) &&
      (s.dim < 0 || (s.offset >= 0 && s.length >= 0 && s.offset + s.length <= s.view[size_t(s.dim)]));
  LOOM_CHECK(ok, where, ": expected a consistent shard spec, got ", s.str());
  return s;
}

bool operator==(const ShardSpec& a, const ShardSpec& b) {
  return a.logical == b.logical && a.view == b.view && a.dim == b.dim && a.offset == b.offset &&
         a.length == b.length;
}

std::vector<ShardRun> shard_runs(const ShardSpec& spec) {
  if (spec.is_whole()) {
    const int64_t n = shape_numel(spec.logical);
    return n > 0 ? std::vector<ShardRun>{{0, 0, n}} : std::vector<ShardRun>{};
  }
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < spec.dim; ++d) outer *= spec.view[size_t(d)];
  for (size_t d = size_t(spec.dim) + 1; d < spec.view.size(); ++d) inner *= spec.view[d];
  const int64_t run = spec.length * inner, stride = spec.view[size_t(spec.dim)] * inner;
  if (run == 0 || outer == 0) return {};
  if (run == stride) return {{0, spec.offset * inner, run * outer}};  // one block: runs adjacent
  std::vector<ShardRun> out;
  out.reserve(size_t(outer));
  for (int64_t o = 0; o < outer; ++o)
    out.push_back({o * run, o * stride + spec.offset * inner, run});
  return out;
}

Tensor extract_shard(const Tensor& logical, const ShardSpec& spec) {
  NoGradGuard g;
  return piece_view(logical.detach(), spec).contiguous().clone().reshape(spec.local_shape());
}

}  // namespace loom

// HfReader (see HfReader.h): the safetensors headers checked against HfConvert's name table, and
// pieces of Loom tensors copied out of byte ranges. A piece's runs are cut into rectangles of the
// Loom tensor viewed as (rows, row width); a rectangle is a band of HF rows (Loom rows, or Loom
// columns where HF stores the transpose) whose wanted slices are copied, a bounded chunk at a
// time, out of the file mapping and then converted to f32 into their place in the piece.
#include "io/HfReader.h"

#include <algorithm>
#include <cstring>

#include "core/util/Check.h"

namespace loom::io {

namespace {

// The most bytes of HF data copied out per step (or one HF row slice, when that is longer).
constexpr uint64_t kChunkBytes = uint64_t(4) << 20;

[[noreturn]] void fail(const std::string& msg) { throw CheckpointError("hf convert: " + msg); }

// (HF name, HF shape) of each tensor holding p, in stacking order.
std::vector<std::pair<std::string, Shape>> hf_tensors(const detail::HfParam& p) {
  if (p.stacked.empty())
    return {{p.hf, p.transposed ? Shape{p.shape[1], p.shape[0]} : p.shape}};
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [name, rows] : p.stacked) {
    Shape s = p.shape;
    s[0] = rows;
    out.push_back({name, s});
  }
  return out;
}

void check_entry(const std::string& name, const Shape& want, const SafetensorsEntry& e,
                 const std::string& dir) {
  if (e.shape != want)
    fail(dir + ": tensor '" + name + "': expected shape " + shape_str(want) + ", got " +
         shape_str(e.shape));
  const std::optional<DType> dt = safetensors_loom_dtype(e.dtype);
  if (!dt || !is_floating(*dt))
    fail(dir + ": tensor '" + name + "': expected a float dtype, got " + e.dtype);
}

}  // namespace

HfReader::HfReader(const std::string& hf_dir)
    : dir_(hf_dir), cfg_(detail::read_hf_config(hf_dir)), files_(open_safetensors_dir(hf_dir)) {
  params_ = detail::hf_params(cfg_.config, cfg_.vocab_size);
  std::map<std::string, std::string> stored;  // table name -> name in the file
  for (const auto& [name, unused] : files_.file_of) {
    const std::string n = detail::hf_table_name(name);
    if (n.empty()) continue;
    if (!stored.emplace(n, name).second)
      fail("tensor '" + n + "' appears both with and without \"transformer.\"");
  }
  for (const detail::HfParam& p : params_) {
    for (const auto& [name, shape] : hf_tensors(p)) {
      auto it = stored.find(name);
      if (it == stored.end()) fail(dir_ + ": missing tensor '" + name + "'");
      check_entry(name, shape, files_.file(it->second).entry(it->second), dir_);
      hf_name_[p.loom].push_back(it->second);
      stored.erase(it);
    }
  }
  auto head = stored.find("lm_head.weight");
  if (cfg_.config.tie_embeddings && head != stored.end()) {
    // A tied checkpoint may still carry the head; read() checks it is the embedding itself.
    check_entry("lm_head.weight", {cfg_.vocab_size, cfg_.config.n_embd},
                files_.file(head->second).entry(head->second), dir_);
    tied_head_ = head->second;
    stored.erase(head);
  }
  if (!stored.empty())
    fail(dir_ + ": unexpected tensor '" + stored.begin()->first + "' (" +
         std::to_string(stored.size()) + " unmapped; n_layer in config.json is " +
         std::to_string(cfg_.config.n_layer) + ")");
  tokenizer_ = detail::find_hf_tokenizer(hf_dir);
}

HfReader::Source HfReader::source(const std::string& loom_name) const {
  auto it = hf_name_.find(loom_name);
  if (it == hf_name_.end()) fail(dir_ + ": has no tensor for Loom parameter '" + loom_name + "'");
  const auto p = std::find_if(params_.begin(), params_.end(),
                              [&](const detail::HfParam& q) { return q.loom == loom_name; });
  return source_of(*p, it->second);
}

HfReader::Source HfReader::source_of(const detail::HfParam& p,
                                     const std::vector<std::string>& stored) const {
  Source s{&p, {}};
  int64_t row0 = 0;
  for (const std::string& name : stored) {
    const SafetensorsFile& f = files_.file(name);
    const SafetensorsEntry& e = f.entry(name);
    const int64_t rows = p.transposed ? p.shape[0] : e.shape[0];
    s.parts.push_back({&f, &e, row0, rows});
    row0 += rows;
  }
  return s;
}

std::optional<TensorInfo> HfReader::info(const std::string& loom_name) const {
  if (!hf_name_.count(loom_name)) return std::nullopt;
  return TensorInfo{source(loom_name).param->shape, DType::F32};
}

Tensor HfReader::read(const std::string& loom_name, const ShardSpec& piece) const {
  const Source s = source(loom_name);
  if (piece.logical != s.param->shape)
    fail(dir_ + ": tensor '" + loom_name + "' has shape " + shape_str(s.param->shape) +
         ", but a piece of a " + shape_str(piece.logical) + " tensor was asked for (" +
         piece.str() + ")");
  Tensor out = Tensor::empty(piece.local_shape(), DType::F32);
  read_into(s, piece, out);
  if (loom_name == "wte.weight" && !tied_head_.empty()) {
    Tensor head = Tensor::empty(piece.local_shape(), DType::F32);
    read_into(source_of(*s.param, {tied_head_}), piece, head);
    if (std::memcmp(head.raw_data(), out.raw_data(), out.nbytes()) != 0)
      fail(dir_ + ": tie_word_embeddings is true but lm_head.weight differs from wte.weight");
  }
  return out;
}

// Cuts each run of the piece (contiguous in the Loom tensor viewed as (R, W)) into a partial
// row, a block of whole rows and a partial row, and copies each.
void HfReader::read_into(const Source& s, const ShardSpec& piece, Tensor& out) const {
  const int64_t R = s.param->shape[0];
  const int64_t W = R > 0 ? shape_numel(s.param->shape) / R : 1;
  Tensor flat = out.view({out.numel()});
  for (const ShardRun& run : shard_runs(piece)) {
    int64_t f = run.logical, dst = run.local;
    const int64_t end = run.logical + run.length;
    while (f < end) {
      const int64_t r = f / W, c = f % W;
      const bool block = c == 0 && end - f >= W;
      const int64_t rows = block ? (end - f) / W : 1;
      const int64_t c1 = block ? W : std::min(W, c + (end - f));
      const int64_t n = rows * (c1 - c);
      copy_rect(s, r, r + rows, c, c1, flat.narrow(0, dst, n).view({rows, c1 - c}));
      f += n;
      dst += n;
    }
  }
}

// dst (r1 - r0, c1 - c0) = rows [r0, r1) x columns [c0, c1) of the Loom tensor: the rows each
// stacked HF tensor holds.
void HfReader::copy_rect(const Source& s, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                         Tensor dst) const {
  for (const Part& part : s.parts) {
    const int64_t lo = std::max(r0, part.row0), hi = std::min(r1, part.row0 + part.rows);
    if (lo < hi)
      copy_part(part, s.param->transposed, lo - part.row0, hi - part.row0, c0, c1,
                dst.narrow(0, lo - r0, hi - lo));
  }
}

// dst = rows [r0, r1) x columns [c0, c1) of one part. HF holds it as a band of HF rows [h0, h1),
// each contributing columns [k0, k1): the part's rows and columns, or, transposed, its columns
// and rows.
void HfReader::copy_part(const Part& part, bool t, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                         Tensor dst) const {
  const int64_t h0 = t ? c0 : r0, h1 = t ? c1 : r1, k0 = t ? r0 : c0, k1 = t ? r1 : c1;
  const Shape& hf = part.entry->shape;
  const int64_t width = hf.size() > 1 ? shape_numel(hf) / hf[0] : 1;  // HF row length
  const DType dt = *safetensors_loom_dtype(part.entry->dtype);
  const auto es = int64_t(dtype_size(dt)), cols = k1 - k0;
  const int64_t step = std::max<int64_t>(1, int64_t(kChunkBytes) / (cols * es));
  for (int64_t h = h0; h < h1; h += step) {
    const int64_t k = std::min(step, h1 - h);
    Tensor chunk = Tensor::empty({k, cols}, dt);  // at most kChunkBytes (or one row slice)
    auto* p = static_cast<uint8_t*>(chunk.raw_data());
    if (cols == width) {  // whole HF rows: one byte range
      part.file->read_bytes(*part.entry, uint64_t(h * width * es), uint64_t(k * width * es), p);
    } else {
      for (int64_t i = 0; i < k; ++i)
        part.file->read_bytes(*part.entry, uint64_t(((h + i) * width + k0) * es),
                              uint64_t(cols * es), p + i * cols * es);
    }
    bytes_read_ += uint64_t(k * cols * es);
    if (t)
      dst.narrow(1, h - h0, k).copy_(chunk.t());
    else
      dst.narrow(0, h - h0, k).copy_(chunk);
  }
}

}  // namespace loom::io

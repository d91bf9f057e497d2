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

Shape hf_shape(const detail::HfParam& p) {
  return p.transposed ? Shape{p.shape[1], p.shape[0]} : p.shape;
}

void check_entry(const detail::HfParam& p, const SafetensorsEntry& e, const std::string& dir) {
  const Shape want = hf_shape(p);
  if (e.shape != want)
    fail(dir + ": tensor '" + p.hf + "': expected shape " + shape_str(want) + ", got " +
         shape_str(e.shape));
  const std::optional<DType> dt = safetensors_loom_dtype(e.dtype);
  if (!dt || !is_floating(*dt))
    fail(dir + ": tensor '" + p.hf + "': expected a float dtype, got " + e.dtype);
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
    auto it = stored.find(p.hf);
    if (it == stored.end()) fail(dir_ + ": missing tensor '" + p.hf + "'");
    check_entry(p, files_.file(it->second).entry(it->second), dir_);
    hf_name_[p.loom] = it->second;
    stored.erase(it);
  }
  auto head = stored.find("lm_head.weight");
  if (cfg_.config.tie_embeddings && head != stored.end()) {
    // A tied checkpoint may still carry the head; read() checks it is the embedding itself.
    check_entry(
        {"lm_head.weight", "lm_head.weight", {cfg_.vocab_size, cfg_.config.n_embd}, false, true},
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
  const SafetensorsFile& f = files_.file(it->second);
  return {&*p, &f, &f.entry(it->second)};
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
    const SafetensorsFile& f = files_.file(tied_head_);
    Tensor head = Tensor::empty(piece.local_shape(), DType::F32);
    read_into({s.param, &f, &f.entry(tied_head_)}, piece, head);
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

// dst (r1 - r0, c1 - c0) = rows [r0, r1) x columns [c0, c1) of the Loom tensor. HF holds it as a
// band of HF rows [h0, h1), each contributing columns [k0, k1): Loom's rows and columns, or,
// transposed, Loom's columns and rows.
void HfReader::copy_rect(const Source& s, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                         Tensor dst) const {
  const bool t = s.param->transposed;
  const int64_t h0 = t ? c0 : r0, h1 = t ? c1 : r1, k0 = t ? r0 : c0, k1 = t ? r1 : c1;
  const Shape hf = hf_shape(*s.param);
  const int64_t width = hf.size() > 1 ? shape_numel(hf) / hf[0] : 1;  // HF row length
  const DType dt = *safetensors_loom_dtype(s.entry->dtype);
  const auto es = int64_t(dtype_size(dt)), cols = k1 - k0;
  const int64_t step = std::max<int64_t>(1, int64_t(kChunkBytes) / (cols * es));
  for (int64_t h = h0; h < h1; h += step) {
    const int64_t k = std::min(step, h1 - h);
    Tensor chunk = Tensor::empty({k, cols}, dt);  // at most kChunkBytes (or one row slice)
    auto* p = static_cast<uint8_t*>(chunk.raw_data());
    if (cols == width) {  // whole HF rows: one byte range
      s.file->read_bytes(*s.entry, uint64_t(h * width * es), uint64_t(k * width * es), p);
    } else {
      for (int64_t i = 0; i < k; ++i)
        s.file->read_bytes(*s.entry, uint64_t(((h + i) * width + k0) * es), uint64_t(cols * es),
                           p + i * cols * es);
    }
    bytes_read_ += uint64_t(k * cols * es);
    if (t)
      dst.narrow(1, h - h0, k).copy_(chunk.t());
    else
      dst.narrow(0, h - h0, k).copy_(chunk);
  }
}

}  // namespace loom::io

// CheckpointReader (see CheckpointReader.h) and the loading side of Checkpoint.h built on it:
// verifying the manifest and every file a load reads, load_checkpoint (whole tensors through the
// reader), read_checkpoint_meta, checkpoint_tokenizer and verify_checkpoint. The one way tensor
// bytes leave a checkpoint file is CheckpointReader::read: pread of the overlaps between the
// wanted piece's flat ranges and the stored pieces' (Loom's datasets are contiguous and
// unfiltered, so a stored piece's bytes are its row-major elements at its dataset's file offset).
#include "io/CheckpointReader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "core/util/Check.h"
#include "io/CheckpointLineage.h"
#include "io/CheckpointShards.h"
#include "io/Sha256.h"

namespace fs = std::filesystem;

namespace loom::io {

namespace {

[[noreturn]] void fail(const std::string& msg) { detail::checkpoint_fail(msg); }

// Hash-checks one file the manifest lists.
void verify_file(const std::string& dir, const std::string& name, const Manifest& m) {
  const std::string p = dir + "/" + name;
  auto it = m.files.find(name);
  if (it == m.files.end()) fail(dir + "/MANIFEST.json does not list " + name);
  std::error_code ec;
  uint64_t size = fs::file_size(p, ec);
  if (ec) fail(p + " is missing");
  if (size != it->second.bytes)
    fail(p + ": expected " + std::to_string(it->second.bytes) + " bytes, got " +
         std::to_string(size) + " (truncated or modified)");
  std::string hash = sha256_file(p);
  if (hash != it->second.sha256)
    fail(p + ": expected sha256 " + it->second.sha256 + ", got " + hash + " (corrupt)");
}

CheckpointMeta verified_meta(const std::string& dir, const Manifest& m) {
  const std::string path = dir + "/" + detail::kMetaFile;
  verify_file(dir, detail::kMetaFile, m);
  CheckpointMeta meta = parse_meta(detail::read_text(path), path);
  if (meta.step != m.step && m.version >= 3)
    fail(dir + ": meta.json says step " + std::to_string(meta.step) + " but MANIFEST.json says " +
         std::to_string(m.step));
  return meta;
}

TokenizerFiles verified_tokenizer(const std::string& dir, const Manifest& m) {
  TokenizerFiles t;
  const std::string abs = fs::absolute(dir).lexically_normal().string();
  for (const std::string& n : m.tokenizer_files) {
    verify_file(dir, n, m);
    std::string p = abs + "/" + n;
    if (n == "vocab.json") t.vocab_json = p;
    if (n == "merges.txt") t.merges_txt = p;
    if (n == "tokenizer.json") t.tokenizer_json = p;
    if (n == "tokenizer_config.json") t.tokenizer_config_json = p;
  }
  return t;
}

bool starts_with_any(const std::string& name, const std::vector<std::string>& prefixes) {
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return name.rfind(p, 0) == 0; });
}

void check_required(const std::string& dir, const std::vector<std::string>& required,
                    const std::function<bool(const std::string&)>& present) {
  std::string missing;
  int64_t count = 0;
  for (const std::string& name : required) {
    if (present(name)) continue;
    missing += "\n  " + name;
    ++count;
  }
  if (count > 0)
    fail(dir + ": expected every tensor of the state, but " + std::to_string(count) +
         " are missing:" + missing);
}

// A copy of n elements from a stored piece (element src of its data) into the wanted piece
// (element dst).
struct Copy {
  const detail::StoredPiece* from;
  int64_t dst, src, n;
};

// The copies that fill the piece whose runs are `want` from the stored pieces of `t`: for each
// stored piece, a merge walk over both sorted run lists emits the overlaps; an overlap contiguous
// with the previous one in both places extends it.
std::vector<Copy> plan_copies(const std::vector<ShardRun>& want, const detail::StoredTensor& t) {
  std::vector<Copy> out;
  for (const detail::StoredPiece& p : t.pieces) {
    const std::vector<ShardRun> have = shard_runs(p.spec);
    size_t i = 0, j = 0;
    while (i < want.size() && j < have.size()) {
      const ShardRun &w = want[i], &h = have[j];
      const int64_t lo = std::max(w.logical, h.logical);
      const int64_t hi = std::min(w.logical + w.length, h.logical + h.length);
      if (lo < hi) {
        Copy c{&p, w.local + lo - w.logical, h.local + lo - h.logical, hi - lo};
        Copy* last = out.empty() ? nullptr : &out.back();
        if (last && last->from == &p && last->dst + last->n == c.dst &&
            last->src + last->n == c.src)
          last->n += c.n;
        else
          out.push_back(c);
      }
      if (w.logical + w.length <= h.logical + h.length)
        ++i;
      else
        ++j;
    }
  }
  return out;
}

// File descriptors opened on first use, closed on scope exit.
struct OpenFds {
  const std::vector<std::string>& paths;
  std::vector<int> fds = std::vector<int>(paths.size(), -1);
  ~OpenFds() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
  int get(size_t file) {
    if (fds[file] < 0) fds[file] = ::open(paths[file].c_str(), O_RDONLY | O_CLOEXEC);
    if (fds[file] < 0) fail("cannot open " + paths[file] + ": " + std::strerror(errno));
    return fds[file];
  }
};

void pread_all(int fd, uint8_t* dst, uint64_t n, uint64_t at, const std::string& what) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, dst, size_t(std::min<uint64_t>(n, 1u << 30)), off_t(at));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      fail("cannot read " + what + " at byte " + std::to_string(at) + ": " +
           (got < 0 ? std::strerror(errno) : "unexpected end of file"));
    dst += got;
    at += uint64_t(got);
    n -= uint64_t(got);
  }
}

}  // namespace

struct CheckpointReader::Index {
  std::vector<std::string> paths;  // as StoredPiece::file indexes them
  std::map<std::string, detail::StoredTensor> tensors;
};

namespace {

// Indexes the selected groups' files; a name stored in another group's file is an error.
void index_groups(const std::string& dir, const Manifest& m, const LoadOptions& opts,
                  std::vector<std::string>& paths,
                  std::map<std::string, detail::StoredTensor>& out) {
  const std::vector<std::string> selected = m.tensor_files_for(opts.prefixes);
  for (const auto& [group, files] : m.tensor_groups) {
    // NB: a group's files are selected together (a file belongs to one group only).
    if (std::find(selected.begin(), selected.end(), files.front()) == selected.end()) continue;
    std::vector<std::string> group_paths;
    for (const std::string& f : files) group_paths.push_back(dir + "/" + f);
    auto want = [&, g = group](const std::string& name) {
      if (m.version >= 3 && m.group_of(name) != g)
        fail(dir + ": tensor \"" + name + "\" is stored in a file of group \"" + g +
             "\" but belongs to group \"" + m.group_of(name) + "\"");
      return opts.prefixes.empty() || starts_with_any(name, opts.prefixes);
    };
    const size_t first = paths.size();
    paths.insert(paths.end(), group_paths.begin(), group_paths.end());
    for (auto& [name, t] : detail::index_tensor_files(group_paths, want)) {
      for (detail::StoredPiece& p : t.pieces) p.file += first;
      out[name] = std::move(t);
    }
  }
}

}  // namespace

CheckpointReader::CheckpointReader(const std::string& dir, const LoadOptions& opts) : dir_(dir) {
  Manifest m = detail::read_manifest_file(dir);
  // Everything this reader reads is verified before any tensor file is opened.
  CheckpointMeta meta = verified_meta(dir, m);
  tokenizer_ = verified_tokenizer(dir, m);
  for (const std::string& f : m.tensor_files_for(opts.prefixes)) verify_file(dir, f, m);
  for (const std::string& name : opts.required)
    LOOM_CHECK(opts.prefixes.empty() || starts_with_any(name, opts.prefixes),
               "load_checkpoint: required tensor \"", name, "\" is outside the loaded prefixes");
  auto index = std::make_unique<Index>();
  index_groups(dir, m, opts, index->paths, index->tensors);
  check_required(dir, opts.required,
                 [&](const std::string& n) { return index->tensors.count(n) > 0; });
  index_ = std::move(index);
  step_ = meta.step;
  meta_ = std::move(meta.entries);
}

CheckpointReader::~CheckpointReader() = default;

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : index_->tensors) out.push_back(name);
  return out;
}

std::optional<TensorInfo> CheckpointReader::info(const std::string& name) const {
  auto it = index_->tensors.find(name);
  if (it == index_->tensors.end()) return std::nullopt;
  return TensorInfo{it->second.shape, it->second.dtype};
}

Tensor CheckpointReader::read(const std::string& name) const {
  std::optional<TensorInfo> i = info(name);
  if (!i) fail(dir_ + ": has no tensor \"" + name + "\"");
  return read(name, ShardSpec::whole(i->shape));
}

Tensor CheckpointReader::read(const std::string& name, const ShardSpec& piece) const {
  auto it = index_->tensors.find(name);
  if (it == index_->tensors.end()) fail(dir_ + ": has no tensor \"" + name + "\"");
  const detail::StoredTensor& t = it->second;
  if (piece.logical != t.shape)
    fail(dir_ + ": tensor \"" + name + "\" has shape " + shape_str(t.shape) +
         ", but a piece of a " + shape_str(piece.logical) + " tensor was asked for (" +
         piece.str() + ")");
  Tensor out = Tensor::empty(piece.local_shape(), t.dtype);
  auto* base = static_cast<uint8_t*>(out.raw_data());
  const auto esize = int64_t(dtype_size(t.dtype));
  OpenFds fds{index_->paths};
  int64_t filled = 0;
  for (const Copy& c : plan_copies(shard_runs(piece), t)) {
    uint8_t* dst = base + c.dst * esize;
    const uint64_t n = uint64_t(c.n * esize), at = uint64_t(c.src * esize);
    const std::string& path = index_->paths[c.from->file];
    if (c.from->offset < 0)
      std::memcpy(dst, c.from->bytes.data() + at, n);
    else
      pread_all(fds.get(c.from->file), dst, n, uint64_t(c.from->offset) + at,
                "tensor \"" + name + "\" from " + path);
    bytes_read_ += n;
    filled += c.n;
  }
  // The stored pieces tile the logical tensor (checked when indexing), so they fill the piece.
  LOOM_INTERNAL_ASSERT(filled == out.numel(), "CheckpointReader: ", name, " piece ", piece.str(),
                       " filled ", filled, " of ", out.numel(), " elements");
  return out;
}

void verify_checkpoint(const std::string& dir) {
  Manifest m = detail::read_manifest_file(dir);
  for (const auto& [name, unused] : m.files) verify_file(dir, name, m);
}

Checkpoint load_checkpoint(const std::string& dir, const LoadOptions& opts) {
  CheckpointReader r(dir, opts);
  Checkpoint ck;
  ck.step = r.step();
  ck.meta = r.meta();
  ck.tokenizer = r.tokenizer();
  for (const std::string& name : r.names()) ck.tensors[name] = r.read(name);
  return ck;
}

void check_required_tensors(const Checkpoint& ck, const std::vector<std::string>& names,
                            const std::string& dir) {
  check_required(dir, names, [&](const std::string& n) { return ck.tensors.count(n) > 0; });
}

CheckpointMeta read_checkpoint_meta(const std::string& dir) {
  return verified_meta(dir, detail::read_manifest_file(dir));
}

TokenizerFiles checkpoint_tokenizer(const std::string& dir) {
  return verified_tokenizer(dir, detail::read_manifest_file(dir));
}

}  // namespace loom::io

// Safetensors reader (mmap + full header validation) and writer (deterministic, 8-byte aligned,
// atomic), plus Hugging Face's sharded layout (model.safetensors.index.json). See Safetensors.h.
#include "io/Safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/util/Check.h"
#include "core/util/CheckedMath.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loom::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the limit of Hugging Face's reader

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw CheckpointError("safetensors " + path + ": " + msg);
}

const std::map<std::string, size_t>& dtype_sizes() {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  return sizes;
}

const char* safetensors_dtype(DType dt) {
  switch (dt) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::Bool:
      return "BOOL";
  }
  return "?";
}

// Parses one header entry; every complaint names the tensor.
SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const json& v,
                             uint64_t data_bytes) {
  auto bad = [&](const std::string& what) { fail(path, "tensor '" + name + "': " + what); };
  if (!v.is_object()) bad("expected an object {dtype, shape, data_offsets}, got " + v.dump());
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) bad(std::string("missing field \"") + key + "\"");
  SafetensorsEntry e;
  e.name = name;
  if (!v["dtype"].is_string()) bad("expected dtype a string, got " + v["dtype"].dump());
  e.dtype = v["dtype"].get<std::string>();
  size_t esize = safetensors_dtype_size(e.dtype);
  if (esize == 0) bad("unknown dtype \"" + e.dtype + "\"");
  const json& shape = v["shape"];
  if (!shape.is_array()) bad("expected shape an array, got " + shape.dump());
  for (const json& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
      bad("expected shape of integers >= 0 (each below 2^63), got " + shape.dump());
    e.shape.push_back(d.get<int64_t>());
  }
  // NB: checked, so a shape like [2^60, 4] cannot wrap to the 0 bytes its offsets claim.
  std::optional<int64_t> numel = try_numel(e.shape);
  std::optional<int64_t> nbytes = numel ? try_mul(*numel, int64_t(esize)) : std::nullopt;
  if (!nbytes) bad("shape " + shape.dump() + " of " + e.dtype + " needs more than 2^63 bytes");
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    bad("expected data_offsets [begin, end] of integers >= 0, got " + off.dump());
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.end < e.begin) bad("data_offsets " + off.dump() + " end before they begin");
  if (e.end > data_bytes)
    bad("data_offsets " + off.dump() + " run past the data region of " +
        std::to_string(data_bytes) + " bytes (file truncated?)");
  if (uint64_t(*nbytes) != e.end - e.begin)
    bad("shape " + shape.dump() + " of " + e.dtype + " needs " + std::to_string(*nbytes) +
        " bytes, but data_offsets " + off.dump() + " hold " + std::to_string(e.end - e.begin));
  return e;
}

// Sorted by offset, tensors must tile [0, data_bytes) exactly: no overlap, no gap, no tail.
void check_layout(const std::string& path, std::vector<SafetensorsEntry> by_off,
                  uint64_t data_bytes) {
  std::sort(by_off.begin(), by_off.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : by_off) {
    if (e.begin < pos)
      fail(path, "tensor '" + e.name + "' (bytes " + std::to_string(e.begin) + ".." +
                     std::to_string(e.end) + ") overlaps tensor '" + prev->name + "' (bytes " +
                     std::to_string(prev->begin) + ".." + std::to_string(prev->end) + ")");
    if (e.begin > pos)
      fail(path, "tensor '" + e.name + "' begins at byte " + std::to_string(e.begin) +
                     " but the previous tensor ends at " + std::to_string(pos) +
                     " (a gap in the data region)");
    pos = e.end;
    prev = &e;
  }
  if (pos != data_bytes)
    fail(path, "the tensors cover " + std::to_string(pos) + " bytes but the data region holds " +
                   std::to_string(data_bytes) + " (trailing bytes)");
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail(path, "cannot open to flush it");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail(path, "fsync failed");
}

}  // namespace

std::optional<DType> safetensors_loom_dtype(const std::string& dtype) {
  static const std::map<std::string, DType> m = {
      {"F32", DType::F32}, {"F64", DType::F64}, {"BF16", DType::BF16}, {"F16", DType::F16},
      {"I32", DType::I32}, {"I64", DType::I64}, {"BOOL", DType::Bool}};
  auto it = m.find(dtype);
  return it == m.end() ? std::nullopt : std::optional<DType>(it->second);
}

size_t safetensors_dtype_size(const std::string& dtype) {
  auto it = dtype_sizes().find(dtype);
  return it == dtype_sizes().end() ? 0 : it->second;
}

// ---- reader
// --------------------------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, "cannot stat");
  }
  f.map_ = std::make_shared<Mapping>();
  f.map_->size = size_t(st.st_size);
  if (f.map_->size > 0) {
    // Copy-on-write: views may be written to without touching the file.
    void* a = ::mmap(nullptr, f.map_->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) {
      ::close(fd);
      fail(path, std::string("mmap failed: ") + std::strerror(errno));
    }
    f.map_->addr = a;
  }
  ::close(fd);
  const uint64_t size = f.map_->size;
  const auto* base = static_cast<const uint8_t*>(f.map_->addr);
  if (size < 8)
    fail(path, "expected at least 8 bytes (header length), got " + std::to_string(size));
  uint64_t n = 0;
  std::memcpy(&n, base, 8);
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes; truncated?)");
  if (n > kMaxHeaderBytes) fail(path, "header length " + std::to_string(n) + " is too large");
  std::string_view text(reinterpret_cast<const char*>(base + 8), size_t(n));
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "expected the header to be a JSON object");
  const uint64_t data_bytes = size - 8 - n;
  f.data_ = base + 8 + n;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "expected __metadata__ an object of strings");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail(path, "__metadata__ entry '" + k + "' is not a string");
        f.metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    f.entries_.push_back(parse_entry(path, name, v, data_bytes));
  }
  check_layout(path, f.entries_, data_bytes);
  return f;  // entries_ follow json's (sorted) key order
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const auto& e) { return e.name == name; });
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it =
      std::lower_bound(entries_.begin(), entries_.end(), name,
                       [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  if (it == entries_.end() || it->name != name) fail(path_, "has no tensor '" + name + "'");
  return *it;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  const std::optional<DType> known = safetensors_loom_dtype(e.dtype);
  if (!known)
    fail(path_, "tensor '" + name + "': dtype " + e.dtype +
                    " has no Loom equivalent (expected F32, F64, BF16, F16, I32, I64 or BOOL)");
  const DType dt = *known;
  const uint8_t* p = data_ + e.begin;
  size_t nbytes = size_t(e.end - e.begin);
  if (nbytes == 0 || reinterpret_cast<uintptr_t>(p) % dtype_size(dt) != 0) {
    Tensor t = Tensor::empty(e.shape, dt);
    if (nbytes) std::memcpy(t.raw_data(), p, nbytes);
    return t;
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(const_cast<uint8_t*>(p), nbytes, Device::cpu(),
                                            std::shared_ptr<void>(map_));
  impl->shape = e.shape;
  impl->strides = contiguous_strides(e.shape);
  impl->dtype = dt;
  return Tensor(std::move(impl));
}

void SafetensorsFile::read_bytes(const SafetensorsEntry& e, uint64_t offset, uint64_t n,
                                 void* dst) const {
  if (e.end > uint64_t(map_->size) || offset > e.end - e.begin || n > e.end - e.begin - offset)
    fail(path_, "tensor '" + e.name + "': bytes [" + std::to_string(offset) + ", +" +
                    std::to_string(n) + ") lie outside its data");
  if (n > 0) std::memcpy(dst, data_ + e.begin + offset, size_t(n));
}

std::map<std::string, Tensor> SafetensorsFile::tensors() const {
  std::map<std::string, Tensor> out;
  for (const auto& e : entries_) out[e.name] = tensor(e.name);
  return out;
}

// ---- writer
// --------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> order;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || name.empty()) fail(path, "invalid tensor name '" + name + "'");
    if (!t.defined()) fail(path, "tensor '" + name + "' is undefined");
    order.emplace_back(name, t.detach().to(Device::cpu()).contiguous());
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second.element_size() > b.second.element_size();  // name order within a size
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t pos = 0;
  for (const auto& [name, t] : order) {
    header[name] = {{"dtype", safetensors_dtype(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {pos, pos + t.nbytes()}}};
    pos += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp, "cannot create");
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(text.data(), std::streamsize(n));
    for (const auto& [name, t] : order)
      if (t.nbytes())
        out.write(static_cast<const char*>(t.raw_data()), std::streamsize(t.nbytes()));
    out.close();
    if (!out) fail(tmp, "write failed (disk full?)");
  }
  fsync_path(tmp, false);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail(path, "cannot rename " + tmp + ": " + ec.message());
  fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

// ---- directories (single file or sharded) -------------------------------------------------------

namespace {

// The "weight_map" of a sharded directory's index: tensor name -> shard file.
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  std::ifstream in(index);
  if (!in) fail(index.string(), "cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(index.string(), std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail(index.string(), "expected an object with a \"weight_map\" object");
  std::map<std::string, std::string> out;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) fail(index.string(), "weight_map entry '" + name + "' is not a string");
    std::string f = file.get<std::string>();
    if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
      fail(index.string(),
           "weight_map entry '" + name + "' names a file outside the directory: " + f);
    out[name] = f;
  }
  return out;
}

}  // namespace

SafetensorsDir open_safetensors_dir(const std::string& dir) {
  fs::path index = fs::path(dir) / kSafetensorsIndexFile;
  fs::path single = fs::path(dir) / kSafetensorsFile;
  if (!fs::exists(index) && !fs::exists(single))
    fail(dir, std::string("expected ") + kSafetensorsFile + " or " + kSafetensorsIndexFile +
                  " (pytorch_model.bin is not read; re-save with safe_serialization=True)");
  SafetensorsDir d;
  if (!fs::exists(index)) {
    d.files.push_back(SafetensorsFile::open(single.string()));
    for (const SafetensorsEntry& e : d.files[0].entries()) d.file_of[e.name] = 0;
    return d;
  }
  std::map<std::string, size_t> opened;  // shard file -> index into d.files
  for (const auto& [name, file] : read_weight_map(index)) {
    auto it = opened.find(file);
    if (it == opened.end()) {
      it = opened.emplace(file, d.files.size()).first;
      d.files.push_back(SafetensorsFile::open((fs::path(dir) / file).string()));
    }
    if (!d.files[it->second].contains(name))
      fail(index.string(), "weight_map puts '" + name + "' in " + file + ", which lacks it");
    d.file_of[name] = it->second;
  }
  return d;
}

std::map<std::string, Tensor> load_safetensors_dir(const std::string& dir) {
  SafetensorsDir d = open_safetensors_dir(dir);
  std::map<std::string, Tensor> out;
  for (const auto& [name, i] : d.file_of) out[name] = d.files[i].tensor(name);
  return out;
}

std::vector<std::string> save_safetensors_dir(const std::string& dir,
                                              const std::map<std::string, Tensor>& tensors,
                                              uint64_t max_shard_bytes,
                                              const std::map<std::string, std::string>& metadata) {
  fs::create_directories(dir);
  std::vector<std::map<std::string, Tensor>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const auto& [name, t] : tensors) {
    uint64_t nb = t.nbytes();
    if (max_shard_bytes > 0 && in_shard > 0 && in_shard + nb > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back()[name] = t;
    in_shard += nb;
    total += nb;
  }
  if (shards.size() == 1) {
    save_safetensors((fs::path(dir) / kSafetensorsFile).string(), tensors, metadata);
    fs::remove(fs::path(dir) / kSafetensorsIndexFile);  // a stale index would shadow the file
    return {kSafetensorsFile};
  }
  // transformers prefers model.safetensors over an index: a stale one would shadow the shards.
  fs::remove(fs::path(dir) / kSafetensorsFile);
  std::vector<std::string> files;
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors((fs::path(dir) / buf).string(), shards[i], metadata);
    for (const auto& kv : shards[i]) weight_map[kv.first] = buf;
    files.emplace_back(buf);
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::string path = (fs::path(dir) / kSafetensorsIndexFile).string();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << index.dump(2) << "\n";
    out.close();
    if (!out) fail(tmp, "write failed");
  }
  fs::rename(tmp, path);
  files.emplace_back(kSafetensorsIndexFile);
  return files;
}

}  // namespace loom::io

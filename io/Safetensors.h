// Safetensors files (Hugging Face's weight format): an 8-byte little-endian header length N, N
// bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str:
// str}}, then the raw little-endian tensor bytes, offsets relative to the end of the header. The
// reader memory-maps the file and validates everything before handing out a tensor: each failure is
// a CheckpointError naming the file and, where there is one, the tensor.
//   SafetensorsFile f = SafetensorsFile::open("model.safetensors");
//   Tensor wte = f.tensor("transformer.wte.weight");          // CPU view into the mapping
//   save_safetensors("out.safetensors", {{"w", w}}, {{"format", "pt"}});
//   auto all = load_safetensors_dir("hf_dir");   // model.safetensors or a sharded index
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"

namespace loom::io {

inline constexpr const char* kSafetensorsFile = "model.safetensors";
inline constexpr const char* kSafetensorsIndexFile = "model.safetensors.index.json";

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "BF16", "I64", "BOOL", ...
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data region, [begin, end)
  uint64_t end = 0;
};

// Bytes per element of a safetensors dtype name, or 0 if the name is unknown.
size_t safetensors_dtype_size(const std::string& dtype);
// The Loom dtype of a safetensors dtype name; nullopt for those Loom has none for (U8, F8_*, ...).
std::optional<DType> safetensors_loom_dtype(const std::string& dtype);

class SafetensorsFile {
 public:
  // Maps `path` read-only (copy-on-write) and validates the header: length within the file, JSON
  // object, known dtypes, shape product * element size == byte count, offsets inside the data
  // region, tensors neither overlapping nor leaving gaps, and together covering the data region.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // CheckpointError if absent

  // The tensor as a CPU Tensor that views the mapping (the mapping lives as long as any view).
  // Writes to it stay private to this process. A tensor whose data is not aligned to its element
  // size is copied instead. dtypes without a Loom equivalent (U8, I8, F8_*, ...) throw.
  Tensor tensor(const std::string& name) const;
  std::map<std::string, Tensor> tensors() const;
  // Copies bytes [offset, offset + n) of tensor `e`'s data (an entry of this file) into dst:
  // only those bytes of the mapping are touched. CheckpointError when they lie outside it.
  void read_bytes(const SafetensorsEntry& e, uint64_t offset, uint64_t n, void* dst) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  const uint8_t* data_ = nullptr;  // start of the data region inside the mapping
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any device, any layout) to `path` atomically (temporary file, fsync, rename).
// The header lists names sorted (JSON object order) and is padded with spaces to a multiple of 8
// bytes, as Hugging Face's writer does; data is laid out by element size (largest first), then
// name, so every tensor starts at an offset aligned to its element size.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors files of a Hugging Face model directory (headers validated, data untouched) and
// which file holds each tensor: model.safetensors.index.json ("weight_map": name -> shard file)
// when present, else model.safetensors. Errors name the index or shard file.
struct SafetensorsDir {
  std::vector<SafetensorsFile> files;
  std::map<std::string, size_t> file_of;  // tensor name -> index into files
  const SafetensorsFile& file(const std::string& name) const { return files[file_of.at(name)]; }
};
SafetensorsDir open_safetensors_dir(const std::string& dir);

// Every tensor of a Hugging Face model directory (open_safetensors_dir), as views of the files.
std::map<std::string, Tensor> load_safetensors_dir(const std::string& dir);

// Writes model.safetensors, or when max_shard_bytes > 0 and the tensors exceed it, shards
// "model-0000i-of-0000n.safetensors" (filled in name order) plus model.safetensors.index.json
// with {"metadata": {"total_size"}, "weight_map"}. Returns the files written (names only).
std::vector<std::string> save_safetensors_dir(const std::string& dir,
                                              const std::map<std::string, Tensor>& tensors,
                                              uint64_t max_shard_bytes = 0,
                                              const std::map<std::string, std::string>& metadata = {
                                                  {"format", "pt"}});

}  // namespace loom::io

// The two small JSON files of a checkpoint directory, parsed and validated completely before any
// tensor file is opened: MANIFEST.json (format, version, step, write order, the size + SHA-256 of
// every file, and which tensor file holds which names) and meta.json (step + named text entries).
// Every malformed input (bad JSON, wrong types, unknown version, file names that leave the
// directory, a tensor file not listed) is a CheckpointError naming the file; no JSON library
// exception escapes. Used by Checkpoint.cpp and the fuzz harness tests/fuzz/FuzzManifest.cpp.
//   Manifest m = parse_manifest(text, dir + "/MANIFEST.json");
//   for (const std::string& f : m.tensor_files_for({"model/"})) ...
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace loom::io {

// Version 1: one tensors.h5 of whole tensors. Version 2: pieces with ShardSpecs in tensors.h5 or
// tensors-rNNNNN.h5. Version 3: tensors split by name into groups ("model/" -> model*.h5, the rest
// -> tensors*.h5) so the weights load without reading the optimizer state, a write-order
// sequence number, and the run's tokenizer files. Readers accept every version.
inline constexpr int kCheckpointVersion = 3;
inline constexpr const char* kCheckpointFormat = "loom-checkpoint";

struct ManifestFile {
  uint64_t bytes = 0;
  std::string sha256;  // 64 lowercase hex digits
};

struct Manifest {
  int version = kCheckpointVersion;
  int64_t step = 0;
  int64_t world_size = 0;  // ranks of a collective save; 0 = one writer
  int64_t sequence = 0;    // write order within the checkpoint root (v3); 0 = unknown (v1, v2)
  std::map<std::string, ManifestFile> files;  // every file of the directory except the manifest
  // Tensor files by name group: prefix ("model/", or "" for every name no other prefix takes) ->
  // files. Versions 1 and 2 have one group "".
  std::map<std::string, std::vector<std::string>> tensor_groups;
  // The run's tokenizer files copied into the checkpoint (v3; names from kTokenizerFileNames).
  std::vector<std::string> tokenizer_files;

  // The tensor files that can hold a name starting with one of `prefixes` (all when empty).
  std::vector<std::string> tensor_files_for(const std::vector<std::string>& prefixes) const;
  std::vector<std::string> all_tensor_files() const { return tensor_files_for({}); }
  // The group a tensor name belongs to.
  std::string group_of(const std::string& name) const;
};

// The tokenizer file names a checkpoint may carry (Hugging Face's names).
inline constexpr const char* kTokenizerFileNames[] = {"vocab.json", "merges.txt", "tokenizer.json",
                                                      "tokenizer_config.json"};

// Parses and validates MANIFEST.json text; `path` names it in errors.
Manifest parse_manifest(std::string_view text, const std::string& path);
std::string manifest_json(const Manifest& m);  // the text parse_manifest reads back

struct CheckpointMeta {
  int64_t step = 0;
  std::map<std::string, std::string> entries;  // name -> text (strings as is, other JSON dumped)
};

// Parses meta.json text: an object with "step" (an integer, or its decimal string) and any other
// entries; `path` names it in errors.
CheckpointMeta parse_meta(std::string_view text, const std::string& path);
std::string meta_json(const CheckpointMeta& m);

// True for a plain file name inside a checkpoint directory: non-empty, at most 255 bytes, no '/',
// '\\' or NUL, not "." or "..".
bool is_plain_file_name(std::string_view name);

}  // namespace loom::io

// Internal to loom_io: the checkpoint root as a whole (see Checkpoint.h). Which step_* directories
// are complete, their write order (the manifest's sequence number; for checkpoints written before
// version 3, the manifest's modification time), the run lineage pruning may touch, and the removal
// of temporary directories left by writers that died. Plus the small file helpers both
// Checkpoint.cpp and CheckpointLineage.cpp use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/CheckpointManifest.h"

namespace loom::io::detail {

inline constexpr const char* kMetaFile = "meta.json";

std::string read_text(const std::string& path);                     // CheckpointError
void write_text(const std::string& path, const std::string& text);  // written + fsynced
void fsync_path(const std::string& path, bool directory);           // CheckpointError
Manifest read_manifest_file(const std::string& dir);  // <dir>/MANIFEST.json, validated
// "" when every file the manifest lists exists with its size, else why not.
std::string missing_or_resized(const std::string& dir, const Manifest& m);

// A final-named step_<N> directory under a checkpoint root.
struct RootEntry {
  std::string name, dir;
  bool complete = false;
  std::string problem;   // why it is not complete
  int64_t step = -1;     // from the manifest when it parses
  int64_t sequence = 0;  // write order (0: written before version 3)
  int64_t mtime_ns = 0;  // of MANIFEST.json
};

// Every step_<digits> directory of root (never temporary ones), oldest write first.
std::vector<RootEntry> scan_root(const std::string& root);

// Complete checkpoints to resume from, best first: the one `latest` names when complete, then the
// others newest write first. Appends a line to `problems` for every incomplete directory and a bad
// `latest`; `exists` tells whether root holds any checkpoint at all (a latest file or a step_*
// dir).
std::vector<std::string> resume_candidates(const std::string& root,
                                           std::vector<std::string>& problems, bool& exists);

// 1 + the largest sequence number of any checkpoint under root whose manifest parses.
int64_t next_sequence(const std::string& root);

// Deletes the complete checkpoints of the run lineage ending at `newest` (the directory just
// written) beyond the newest keep_last. The lineage is newest, then, going back in write order,
// each checkpoint whose step is below the previous member's: checkpoints of an abandoned branch
// (higher steps written before a rollback), incomplete or temporary directories are never deleted
// or counted. Failures are logged, never thrown: the new checkpoint is already published.
void prune_lineage(const std::string& root, const std::string& newest, int keep_last);

// Removes step_*.tmp-PID and step_*.del-PID directories whose process PID is not alive (writers
// killed mid-save). Never the current process's own; failures are logged.
void remove_stale_temp_dirs(const std::string& root);

}  // namespace loom::io::detail

// Checkpoints on disk. A checkpoint is a directory <root>/step_<NNNNNNNN>/ holding
//   model.h5, tensors.h5    (one writer) or model-rNNNNN.h5, tensors-rNNNNN.h5 (collective save:
//                           each rank's pieces, each dataset with its ShardSpec): "model/..."
//                           tensors in model*, every other name (optimizer state, ...) in tensors*
//   meta.json               small state: step, RNG, data-loader position, resolved config, ...
//   vocab.json, merges.txt / tokenizer.json (+ tokenizer_config.json)   the run's tokenizer, if
//   given MANIFEST.json           format, version, step, write order, size + SHA-256 of every file,
//   and
//                           which file holds which names (CheckpointManifest.h)
// It is written under a temporary name, flushed (fsync), and renamed only when complete; the file
// <root>/latest moves last and is the truth for resuming. Loading verifies the hashes of the files
// it reads and reads any piece of a logical tensor from the pieces that cover it (any layout loads
// any other's save; CheckpointReader.h reads a rank's pieces only), returning nothing partial. The
// weights alone load without reading or hashing optimizer state.
//   save_checkpoint("out/ckpt", ck, /*keep_last=*/3);   // or (..., 3, world) on every rank
//   Checkpoint back = load_checkpoint(find_latest_checkpoint("out/ckpt"));
//   Checkpoint w = load_checkpoint(dir, LoadOptions::weights_only());       // no optimizer state
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/Tensor.h"
#include "core/nn/ShardSpec.h"
#include "io/CheckpointManifest.h"

namespace loom {
class Communicator;
}

namespace loom::io {

// One rank's part of a logical tensor: tensor has shape spec.local_shape().
struct CheckpointPiece {
  Tensor tensor;
  ShardSpec spec;
};

// A tokenizer as files: vocab_json + merges_txt, or tokenizer_json; tokenizer_config_json is
// optional with either. Empty strings = absent.
struct TokenizerFiles {
  std::string vocab_json, merges_txt, tokenizer_json, tokenizer_config_json;
  bool empty() const { return vocab_json.empty() && merges_txt.empty() && tokenizer_json.empty(); }
};

struct Checkpoint {
  int64_t step = 0;
  std::map<std::string, Tensor> tensors;    // logical name -> tensor (any device; saved from CPU)
  std::map<std::string, std::string> meta;  // name -> string value (JSON or pbtxt text)
  // Pieces this rank writes (collective save: any rank). A replicated tensor must be written by
  // exactly one rank (writers dedupe; two whole pieces of one name are an overlap on load).
  // Empty after load_checkpoint, which reads every logical tensor whole into `tensors`.
  std::map<std::string, CheckpointPiece> pieces;
  // On save: the run's tokenizer files, copied into the checkpoint (rank 0's in a collective save).
  // After load: their absolute paths inside the checkpoint directory (empty if it carries none).
  TokenizerFiles tokenizer;
};

struct SaveOptions {
  int keep_last = 0;  // > 0: prune this run's complete checkpoints beyond the newest keep_last
  // NB: by default a tensor under "model/" or "optim/" (floating point) holding NaN or Inf is
  // refused with NonFiniteError and nothing is written: a diverged state must never replace the
  // last good checkpoint (and then be kept while pruning deletes the good one). Set true only to
  // save a diverged state on purpose (e.g. for debugging it).
  bool allow_non_finite = false;
};

struct LoadOptions {
  // Load only tensors whose name starts with one of these (all when empty). Only the tensor files
  // that can hold such names are hashed and read: {"model/"} skips the optimizer state.
  std::vector<std::string> prefixes;
  // Exact tensor names that must be present (e.g. every parameter and optimizer buffer the run
  // expects); one CheckpointError lists every missing name.
  std::vector<std::string> required;

  // The model weights only ("model/"): what generate, eval and convert need.
  static LoadOptions weights_only() {
    LoadOptions o;
    o.prefixes = {"model/"};
    return o;
  }
};

std::string checkpoint_dir_name(int64_t step);  // "step_00000020"

// Writes the checkpoint atomically and returns its directory (see SaveOptions for pruning and
// the non-finite check). Also removes temporary directories of dead writers (step_*.tmp-PID whose
// process is gone) under root.
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt,
                            const SaveOptions& opts);
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last = 0);

// Collective over `world` (every rank calls it with the same root, step and options): rank 0
// creates the temporary directory and broadcasts its name; every rank writes its `pieces` (rank 0
// also `tensors`; `meta` and `tokenizer` are taken from rank 0 only) into model-r<rank>.h5 and
// tensors-r<rank>.h5, fsyncs and hashes them; an all-gather of (error flag, sizes, SHA-256s) under
// the communicator deadline tells every rank whether every write succeeded. Then rank 0 writes
// MANIFEST.json, renames, moves `latest` and prunes, and every rank returns the final directory.
// A rank that fails throws CheckpointError on every rank (NonFiniteError on every rank when a
// rank refused non-finite values); a rank that dies makes the others throw CommTimeout. Either way
// the temporary directory is never renamed and the previous checkpoint stays the latest.
// Fault-injection hook for tests: if LOOM_TEST_KILL_RANK_IN_SAVE=<world rank> is set, that rank
// calls std::_Exit(9) after writing half of its datasets (multi-process "killed mid-save" test).
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt,
                            const SaveOptions& opts, Communicator& world);
std::string save_checkpoint(const std::string& root, const Checkpoint& ckpt, int keep_last,
                            Communicator& world);

// The checkpoint `--resume auto` continues from: the one <root>/latest names when it is complete
// (valid manifest, every listed file present with its size); otherwise, with a warning, the newest
// complete one by write order (not by step number: after a rollback the abandoned higher steps are
// older). "" when root holds no checkpoint at all (no `latest`, no step_* directory). Throws
// CheckpointError listing every directory and why when checkpoints exist but none is complete.
// Temporary directories (step_*.tmp-PID) never count.
std::string find_latest_checkpoint(const std::string& root);

// The step directory a Loom checkpoint path stands for: `path` itself when it holds MANIFEST.json,
// else find_latest_checkpoint(path) (a checkpoint root). "" when it is neither (missing, not a
// directory, or a root without checkpoints): the caller names what it expected.
std::string checkpoint_step_dir(const std::string& path);

// Like find_latest_checkpoint + load_checkpoint, but a candidate that fails to load (a hash
// mismatch, a missing required tensor) is skipped with a warning naming why, trying older complete
// checkpoints by write order. std::nullopt when root holds no checkpoint; CheckpointError listing
// every failure when checkpoints exist and none loads. `dir_out` receives the directory loaded.
std::optional<Checkpoint> load_latest_checkpoint(const std::string& root,
                                                 const LoadOptions& opts = {},
                                                 std::string* dir_out = nullptr);

// Verifies format, version and every file's size and SHA-256; throws CheckpointError naming the
// file and the expected vs actual value.
void verify_checkpoint(const std::string& dir);

// Every tensor `opts` selects, whole, through a CheckpointReader (which verifies meta.json, the
// tokenizer files and the tensor files first): each logical tensor is read from the pieces that
// cover it (whatever layout saved it) into `tensors`. Throws CheckpointError naming the file and
// the tensor when pieces disagree on shape or dtype, overlap, or leave elements uncovered, and
// listing every name of opts.required that is absent. A rank that needs only its pieces reads
// them through CheckpointReader instead.
Checkpoint load_checkpoint(const std::string& dir, const LoadOptions& opts = {});

// The same check as LoadOptions::required, for names known only after loading (e.g. from meta):
// CheckpointError naming `dir` and listing every name absent from ck.tensors.
void check_required_tensors(const Checkpoint& ck, const std::vector<std::string>& names,
                            const std::string& dir);

// meta.json (hash-verified) and the step without reading any tensor.
CheckpointMeta read_checkpoint_meta(const std::string& dir);

// The tokenizer files a checkpoint carries, as absolute paths inside it (hash-verified); empty
// when it carries none (checkpoints written before version 3, or runs without a tokenizer).
TokenizerFiles checkpoint_tokenizer(const std::string& dir);

// The tokenizer files of a run: tokenizer_json (with a tokenizer_config.json next to it, when
// there is one), or vocab_json + merges_txt. Paths may be relative to the working directory; each
// must exist (ConfigError naming the file otherwise). All empty -> an empty TokenizerFiles.
TokenizerFiles tokenizer_files_of(const std::string& vocab_json, const std::string& merges_txt,
                                  const std::string& tokenizer_json);

// False if a floating-point tensor holds a NaN or an infinity (integer and bool tensors: true).
bool all_finite(const Tensor& t);
// Names of the tensors under one of `prefixes` (all when empty) that are not all finite.
std::vector<std::string> non_finite_tensors(const std::map<std::string, Tensor>& tensors,
                                            const std::vector<std::string>& prefixes = {});

}  // namespace loom::io

// CheckpointReader: a verified checkpoint directory from which any piece of any tensor is read
// touching only the bytes that piece needs. Opening verifies what load_checkpoint always did
// (manifest, meta.json, tokenizer files, the size + SHA-256 of every tensor file the selected
// prefixes need, the tiling of every selected name's pieces, required names) from metadata only;
// read() then intersects the wanted piece's flat ranges with each stored piece's and preads only
// the overlaps (one read per piece when the layouts agree). So a rank of any TP x PP layout loads
// its pieces of a checkpoint saved under any other layout without holding a whole tensor.
//   CheckpointReader r(dir, LoadOptions::weights_only());
//   Tensor mine = r.read("model/wte.weight", p.meta.spec);    // this rank's rows only
//   Tensor all = r.read("model/ln_f.weight");                 // the whole tensor
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/Checkpoint.h"
#include "io/TensorSource.h"

namespace loom::io {

class CheckpointReader final : public TensorSource {
 public:
  // Verifies `dir` and indexes the tensors `opts` selects (CheckpointError naming the file, the
  // tensor and what is wrong; one error lists every name of opts.required that is absent).
  explicit CheckpointReader(const std::string& dir, const LoadOptions& opts = {});
  ~CheckpointReader() override;
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& where() const override { return dir_; }
  int64_t step() const { return step_; }
  const std::map<std::string, std::string>& meta() const { return meta_; }
  // Absolute paths of the tokenizer files inside the checkpoint (empty if it carries none).
  const TokenizerFiles& tokenizer() const { return tokenizer_; }
  std::vector<std::string> names() const;  // every selected tensor name, sorted
  std::optional<TensorInfo> info(const std::string& name) const override;
  Tensor read(const std::string& name, const ShardSpec& piece) const override;
  Tensor read(const std::string& name) const;  // the whole tensor
  uint64_t bytes_read() const override { return bytes_read_.load(); }

 private:
  struct Index;  // the tensor files and where each stored piece's bytes lie

  std::string dir_;
  int64_t step_ = 0;
  std::map<std::string, std::string> meta_;
  TokenizerFiles tokenizer_;
  std::unique_ptr<const Index> index_;
  mutable std::atomic<uint64_t> bytes_read_{0};
};

}  // namespace loom::io

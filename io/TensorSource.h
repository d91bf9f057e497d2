// TensorSource: named logical tensors on disk that hand out any piece of one (a ShardSpec over
// its logical shape) without reading the rest, so a rank loads only what it holds. Implemented by
// CheckpointReader (a Loom checkpoint directory) and HfReader (a Hugging Face model directory);
// train::load_pieces reads a model's parameters through it.
//   if (auto info = src.info("wte.weight")) Tensor mine = src.read("wte.weight", p.meta.spec);
#pragma once

#include <optional>
#include <string>

#include "core/nn/ShardSpec.h"
#include "core/tensor/Tensor.h"

namespace loom::io {

struct TensorInfo {
  Shape shape;  // logical shape
  DType dtype = DType::F32;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Shape and dtype of tensor `name`; nullopt when the source has none of that name.
  virtual std::optional<TensorInfo> info(const std::string& name) const = 0;
  // Piece `piece` of tensor `name` (piece.logical must equal info(name)->shape) as a contiguous
  // CPU tensor of shape piece.local_shape() and dtype info(name)->dtype. Throws CheckpointError
  // naming the source and the tensor when it cannot be read.
  virtual Tensor read(const std::string& name, const ShardSpec& piece) const = 0;
  // The directory (or file) the tensors come from, for error messages.
  virtual const std::string& where() const = 0;
  // Bytes of tensor data read so far (what read() took from disk or the file mapping).
  virtual uint64_t bytes_read() const = 0;
};

}  // namespace loom::io

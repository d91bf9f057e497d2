// Differentiable view and copy ops. Most users call them as Tensor methods (x.transpose(0, 1));
// this header adds the free functions that have no method form.
#pragma once

#include "core/tensor/Tensor.h"

namespace loom {

// Copies x into a new tensor of dtype `dtype` (differentiable for floating dtypes).
Tensor to_dtype(const Tensor& x, DType dtype);

}  // namespace loom

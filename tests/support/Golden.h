// Reads golden HDF5 files written by tests/golden/gen_*.py (PyTorch). Datasets are addressed by
// path, e.g. "gelu/x", "gelu/y", "gelu/dx"; f32/f64/i64/i32 datasets load as CPU tensors of that
// dtype (0-d datasets as 0-d tensors).
//   GoldenFile g("elementwise.h5");   // from tests/golden/
//   Tensor x = g.get("gelu/x");
#pragma once

#include <string>

#include "core/tensor/Tensor.h"

namespace loom::testing {

class GoldenFile {
 public:
  explicit GoldenFile(const std::string& name);  // relative to tests/golden/
  ~GoldenFile();
  GoldenFile(const GoldenFile&) = delete;
  GoldenFile& operator=(const GoldenFile&) = delete;
  bool has(const std::string& path) const;
  Tensor get(const std::string& path) const;
  double scalar(const std::string& path) const { return get(path).item(); }

 private:
  std::string path_;
  long long file_ = -1;  // hid_t
};

std::string golden_dir();

}  // namespace loom::testing

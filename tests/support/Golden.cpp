// HDF5 reader for golden test data (see Golden.h).
#include "tests/support/Golden.h"

#include <hdf5.h>

#include <vector>

#include "core/util/Check.h"

namespace loom::testing {

std::string golden_dir() { return std::string(LOOM_SOURCE_DIR) + "/tests/golden/"; }

GoldenFile::GoldenFile(const std::string& name) : path_(golden_dir() + name) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  file_ = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  LOOM_CHECK(file_ >= 0, "golden: cannot open ", path_,
             "; hint: regenerate with tests/golden/gen_all.sh");
}

GoldenFile::~GoldenFile() {
  if (file_ >= 0) H5Fclose(hid_t(file_));
}

bool GoldenFile::has(const std::string& path) const {
  return H5Lexists(hid_t(file_), path.c_str(), H5P_DEFAULT) > 0;
}

Tensor GoldenFile::get(const std::string& path) const {
  LOOM_CHECK(has(path), "golden: ", path_, " has no dataset \"", path, "\"");
  hid_t ds = H5Dopen2(hid_t(file_), path.c_str(), H5P_DEFAULT);
  hid_t space = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(size_t(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  Shape shape(dims.begin(), dims.end());
  hid_t ftype = H5Dget_type(ds);
  H5T_class_t cls = H5Tget_class(ftype);
  size_t size = H5Tget_size(ftype);
  DType dt;
  hid_t mtype;
  if (cls == H5T_FLOAT && size == 4) { dt = DType::F32; mtype = H5T_NATIVE_FLOAT; }
  else if (cls == H5T_FLOAT && size == 8) { dt = DType::F64; mtype = H5T_NATIVE_DOUBLE; }
  else if (cls == H5T_INTEGER && size == 8) { dt = DType::I64; mtype = H5T_NATIVE_INT64; }
  else if (cls == H5T_INTEGER && size == 4) { dt = DType::I32; mtype = H5T_NATIVE_INT32; }
  else if (cls == H5T_INTEGER && size == 1) { dt = DType::Bool; mtype = H5T_NATIVE_UINT8; }
  else {
    H5Tclose(ftype); H5Sclose(space); H5Dclose(ds);
    throw ValueError("golden: unsupported dtype in " + path_ + ":" + path);
  }
  Tensor t = Tensor::empty(shape, dt);
  herr_t st = t.numel() ? H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) : 0;
  H5Tclose(ftype);
  H5Sclose(space);
  H5Dclose(ds);
  LOOM_CHECK(st >= 0, "golden: failed to read ", path_, ":", path);
  return t;
}

}  // namespace loom::testing

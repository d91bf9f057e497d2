// Internal to data/: RAII ownership of HDF5 ids and the few typed helpers the token-dataset writer
// and reader share. HDF5's own error printing is turned off; failures become DataError naming the
// file and the object.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>

#include "core/util/Check.h"

namespace loom::data::h5 {

// Owns one HDF5 id; closes it with the right H5*close for its type.
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  ~Id() { reset(); }
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) { reset(); id_ = std::exchange(o.id_, H5I_INVALID_HID); }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ < 0) return;
    switch (H5Iget_type(id_)) {
      case H5I_FILE: H5Fclose(id_); break;
      case H5I_DATASET: H5Dclose(id_); break;
      case H5I_DATASPACE: H5Sclose(id_); break;
      case H5I_DATATYPE: H5Tclose(id_); break;
      case H5I_ATTR: H5Aclose(id_); break;
      case H5I_GROUP: H5Gclose(id_); break;
      case H5I_GENPROP_LST: H5Pclose(id_); break;
      default: break;
    }
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

inline void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

inline void write_attr_i64(hid_t obj, const char* name, int64_t v) {
  Id space(H5Screate(H5S_SCALAR));
  Id attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  LOOM_CHECK_T(DataError, attr.valid() && H5Awrite(attr.get(), H5T_NATIVE_INT64, &v) >= 0,
               "hdf5: cannot write attribute ", name);
}

inline void write_attr_str(hid_t obj, const char* name, const std::string& v) {
  Id space(H5Screate(H5S_SCALAR));
  Id type(H5Tcopy(H5T_C_S1));
  H5Tset_size(type.get(), v.empty() ? 1 : v.size());
  Id attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  std::string buf = v.empty() ? std::string(1, '\0') : v;
  LOOM_CHECK_T(DataError, attr.valid() && H5Awrite(attr.get(), type.get(), buf.data()) >= 0,
               "hdf5: cannot write attribute ", name);
}

// True when the attribute holds exactly one element. NB: H5Aread writes every element, so an
// array attribute read into one scalar would overflow the buffer.
inline bool attr_is_single(hid_t attr) {
  Id space(H5Aget_space(attr));
  return space.valid() && H5Sget_simple_extent_npoints(space.get()) == 1;
}

// Reads an integer attribute; false if absent, not an integer or not a single value.
inline bool read_attr_i64(hid_t obj, const char* name, int64_t& out) {
  if (H5Aexists(obj, name) <= 0) return false;
  Id attr(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr.valid() || !attr_is_single(attr.get())) return false;
  Id type(H5Aget_type(attr.get()));
  if (H5Tget_class(type.get()) != H5T_INTEGER) return false;
  return H5Aread(attr.get(), H5T_NATIVE_INT64, &out) >= 0;
}

// Reads a fixed-length string attribute; false if absent, not a fixed-length string or not a
// single value.
inline bool read_attr_str(hid_t obj, const char* name, std::string& out) {
  if (H5Aexists(obj, name) <= 0) return false;
  Id attr(H5Aopen(obj, name, H5P_DEFAULT));
  if (!attr.valid() || !attr_is_single(attr.get())) return false;
  Id type(H5Aget_type(attr.get()));
  if (H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0) return false;
  out.assign(H5Tget_size(type.get()), '\0');
  if (H5Aread(attr.get(), type.get(), out.data()) < 0) return false;
  out.resize(out.find('\0') == std::string::npos ? out.size() : out.find('\0'));
  return true;
}

}  // namespace loom::data::h5

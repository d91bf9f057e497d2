// Checkpoint tensor files (see CheckpointShards.h): HDF5 datasets carrying their dtype and
// ShardSpec as attributes, and the index of the pieces of any number of files (where each piece's
// raw bytes lie) with overlap / gap / disagreement checks done on the pieces' ranges before any
// data is read.
#include "io/CheckpointShards.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "core/util/CheckedMath.h"

namespace loom::io::detail {

namespace {

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

struct H5Type {
  hid_t mem;
  const char* tag;  // stored in the "loom_dtype" attribute
};

H5Type h5_type(DType dt) {
  switch (dt) {
    case DType::F32: return {H5T_NATIVE_FLOAT, "f32"};
    case DType::F64: return {H5T_NATIVE_DOUBLE, "f64"};
    case DType::BF16: return {H5T_NATIVE_UINT16, "bf16"};
    case DType::F16: return {H5T_NATIVE_UINT16, "f16"};
    case DType::I32: return {H5T_NATIVE_INT32, "i32"};
    case DType::I64: return {H5T_NATIVE_INT64, "i64"};
    case DType::Bool: return {H5T_NATIVE_UINT8, "bool"};
  }
  checkpoint_fail("unsupported dtype");
}

void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) checkpoint_fail("cannot open " + path + " to flush it");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) checkpoint_fail("fsync failed for " + path);
}

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, value.size() + 1);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = attr < 0 ? -1 : H5Awrite(attr, type, value.c_str());
  if (attr >= 0) H5Aclose(attr);
  H5Tclose(type);
  H5Sclose(space);
  if (st < 0) checkpoint_fail(std::string("cannot write attribute ") + name);
}

std::optional<std::string> read_string_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  if (attr < 0) return std::nullopt;
  hid_t space = H5Aget_space(attr);
  // NB: H5Aread writes every element: only a single fixed-length string fits the buffer.
  const bool single = space >= 0 && H5Sget_simple_extent_npoints(space) == 1;
  if (space >= 0) H5Sclose(space);
  hid_t type = H5Aget_type(attr);
  const bool fixed_string = type >= 0 && H5Tget_class(type) == H5T_STRING &&
                            H5Tis_variable_str(type) == 0 && H5Tget_size(type) < (1u << 20);
  std::string buf(fixed_string ? H5Tget_size(type) + 1 : 1, '\0');
  herr_t st = single && fixed_string ? H5Aread(attr, type, buf.data()) : -1;
  if (type >= 0) H5Tclose(type);
  H5Aclose(attr);
  if (st < 0) return std::nullopt;
  return std::string(buf.c_str());
}

// Writes one dataset (the whole tensor when spec is null) with its attributes.
void write_dataset(hid_t file, hid_t lcpl, const std::string& name, const Tensor& t0,
                   const ShardSpec* spec, const std::string& path, const FiniteCheck& finite) {
  Tensor t = t0.detach().to(Device::cpu()).contiguous();
  if (finite && finite(name) && !all_finite(t))
    throw NonFiniteError("checkpoint: tensor \"" + name +
                         "\" holds NaN or Inf; refusing to write " + path +
                         " (a diverged state must not replace the last good checkpoint; "
                         "SaveOptions::allow_non_finite saves it anyway)");
  std::vector<hsize_t> dims(t.shape().begin(), t.shape().end());
  hid_t space = dims.empty() ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple(int(dims.size()), dims.data(), nullptr);
  H5Type ty = h5_type(t.dtype());
  hid_t ds = H5Dcreate2(file, name.c_str(), ty.mem, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(space);
  if (ds < 0) checkpoint_fail("cannot create tensor \"" + name + "\" in " + path);
  herr_t st = t.numel() ? H5Dwrite(ds, ty.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) : 0;
  try {
    write_string_attr(ds, "loom_dtype", ty.tag);
    if (spec) write_string_attr(ds, "loom_shard", spec->to_json());
  } catch (const CheckpointError&) {
    st = -1;
  }
  H5Dclose(ds);
  if (st < 0) checkpoint_fail("cannot write tensor \"" + name + "\" to " + path);
}

struct Entry {
  const std::string* name;
  const Tensor* tensor;
  const ShardSpec* spec;  // null: whole tensor
};

std::vector<Entry> entries_to_write(const std::map<std::string, Tensor>& whole,
                                    const std::map<std::string, CheckpointPiece>& pieces,
                                    const std::string& path) {
  std::vector<Entry> out;
  for (const auto& [name, t] : whole) out.push_back({&name, &t, nullptr});
  for (const auto& [name, p] : pieces) {
    if (whole.count(name))
      checkpoint_fail(path + ": tensor \"" + name + "\" is both a whole tensor and a piece");
    if (!p.tensor.defined() || p.tensor.shape() != p.spec.local_shape())
      checkpoint_fail(path + ": piece \"" + name + "\" (" + p.spec.str() + "): expected shape " +
                      shape_str(p.spec.local_shape()) + ", got " +
                      (p.tensor.defined() ? shape_str(p.tensor.shape()) : std::string("none")));
    out.push_back({&name, &p.tensor, &p.spec});
  }
  return out;
}

}  // namespace

void checkpoint_fail(const std::string& msg) { throw CheckpointError("checkpoint: " + msg); }

void write_tensor_file(const std::string& path, const std::map<std::string, Tensor>& whole,
                       const std::map<std::string, CheckpointPiece>& pieces, bool kill_halfway,
                       const FiniteCheck& finite) {
  std::vector<Entry> entries = entries_to_write(whole, pieces, path);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) {
    H5Pclose(lcpl);
    checkpoint_fail("cannot create " + path);
  }
  try {
    for (size_t i = 0; i < entries.size(); ++i) {
      if (kill_halfway && i == entries.size() / 2) {
        H5Fflush(file, H5F_SCOPE_GLOBAL);
        std::_Exit(9);
      }
      write_dataset(file, lcpl, *entries[i].name, *entries[i].tensor, entries[i].spec, path,
                    finite);
    }
  } catch (...) {
    H5Fclose(file);
    H5Pclose(lcpl);
    throw;
  }
  H5Pclose(lcpl);
  if (H5Fclose(file) < 0) checkpoint_fail("cannot close " + path);
  fsync_file(path);
}

namespace {

// One dataset found in a tensor file.
struct PieceRef {
  size_t file = 0;  // index into the file list
  std::string name;
  ShardSpec spec;
  DType dtype = DType::F32;
  Shape stored;         // the dataset's shape
  int64_t offset = -1;  // byte offset of the raw data in the file; -1: compact (or empty)
  std::vector<uint8_t> bytes;  // a compact dataset's data
};

herr_t visit_cb(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

// NB: a ShardSpec's numbers come from the file. Before ShardSpec::from_json (which adds offset and
// length) sees them, every size must be an integer in [0, 2^61] so no sum or product of two of them
// can overflow; dim in [-1, 64).
void check_spec_ranges(const std::string& text, const std::string& where) {
  constexpr int64_t kMax = int64_t(1) << 61;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return;  // from_json reports malformed text
  }
  auto in_range = [](const nlohmann::json& v, int64_t lo, int64_t hi) {
    return v.is_number_integer() && (v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(hi)
                                                            : v.get<int64_t>() >= lo &&
                                                                  v.get<int64_t>() <= hi);
  };
  bool ok = j.is_object();
  for (const char* key : {"logical", "view"}) {
    if (!ok || !j.contains(key) || !j[key].is_array() || j[key].size() > 32) {
      ok = false;
      break;
    }
    for (const auto& d : j[key]) ok = ok && in_range(d, 0, kMax);
  }
  for (const char* key : {"offset", "length"})
    ok = ok && j.contains(key) && in_range(j[key], 0, kMax);
  ok = ok && j.contains("dim") && in_range(j["dim"], -1, 63);
  if (!ok)
    checkpoint_fail(where +
                    ": expected a shard spec of sizes in [0, 2^61] (dim in [-1, 64)), got " + text);
}

// The dataset must be stored the way write_dataset stores it (contiguous or compact, unfiltered,
// every byte present, elements of the tagged dtype in the host's own layout), so its raw bytes are
// the tensor's bytes and nothing is allocated from a size the file does not back. Returns the
// storage layout.
H5D_layout_t check_storage(hid_t ds, const PieceRef& r, const std::string& where) {
  hid_t ftype = H5Dget_type(ds);
  const size_t esize = ftype >= 0 ? H5Tget_size(ftype) : 0;
  const bool native = ftype >= 0 && H5Tequal(ftype, h5_type(r.dtype).mem) > 0;
  if (ftype >= 0) H5Tclose(ftype);
  if (esize != dtype_size(r.dtype))
    checkpoint_fail(where + ": stored elements of " + std::to_string(esize) + " bytes, expected " +
                    std::to_string(dtype_size(r.dtype)) + " (" + dtype_name(r.dtype) + ")");
  if (!native)
    checkpoint_fail(where + ": expected elements stored in this host's byte order (as Loom " +
                    "writes them), got another " + dtype_name(r.dtype) + " encoding");
  std::optional<int64_t> numel = try_numel(r.stored);
  std::optional<int64_t> bytes = numel ? try_mul(*numel, int64_t(esize)) : std::nullopt;
  if (!bytes) checkpoint_fail(where + ": stored shape " + shape_str(r.stored) + " is too large");
  hid_t dcpl = H5Dget_create_plist(ds);
  const H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
  const int filters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : -1;
  if (dcpl >= 0) H5Pclose(dcpl);
  if ((layout != H5D_CONTIGUOUS && layout != H5D_COMPACT) || filters != 0)
    checkpoint_fail(where + ": expected contiguous, unfiltered storage (as Loom writes it)");
  const auto stored = int64_t(H5Dget_storage_size(ds));
  if (*bytes > 0 && stored != *bytes)
    checkpoint_fail(where + ": shape " + shape_str(r.stored) + " needs " + std::to_string(*bytes) +
                    " bytes but the file stores " + std::to_string(stored));
  return layout;
}

// Where the dataset's bytes are: the file offset of contiguous data (checked to lie inside the
// file), or the data itself for a compact dataset (at most 64 KiB, read here).
void locate_data(hid_t ds, H5D_layout_t layout, PieceRef& r, uint64_t file_bytes,
                 const std::string& where) {
  const auto nbytes = uint64_t(shape_numel(r.stored)) * dtype_size(r.dtype);
  if (nbytes == 0) return;
  if (layout == H5D_COMPACT) {
    r.bytes.resize(size_t(nbytes));
    if (H5Dread(ds, h5_type(r.dtype).mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, r.bytes.data()) < 0)
      checkpoint_fail(where + ": cannot read its compact data");
    return;
  }
  const haddr_t at = H5Dget_offset(ds);
  if (at == HADDR_UNDEF || at > file_bytes || nbytes > file_bytes - at)
    checkpoint_fail(where + ": its " + std::to_string(nbytes) + " bytes do not lie inside the " +
                    std::to_string(file_bytes) + "-byte file");
  r.offset = int64_t(at);
}

// Shape, dtype and ShardSpec of dataset `name`; `r` gets them.
void read_header(hid_t ds, PieceRef& r, const std::string& path, const std::string& where) {
  std::optional<std::string> tag = read_string_attr(ds, "loom_dtype");
  hid_t space = H5Dget_space(ds);
  int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  std::vector<hsize_t> dims(size_t(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  if (space >= 0) H5Sclose(space);
  if (nd < 0) checkpoint_fail(where + ": cannot read its shape");
  for (hsize_t d : dims) {
    if (d > hsize_t(INT64_MAX)) checkpoint_fail(where + ": a dimension of " + std::to_string(d));
    r.stored.push_back(int64_t(d));
  }
  try {
    r.dtype = dtype_from_name(tag.value_or(""));
  } catch (const ValueError&) {
    checkpoint_fail("tensor \"" + r.name + "\" in " + path + " has unknown dtype tag \"" +
                    tag.value_or("") + "\"");
  }
}

PieceRef describe_dataset(hid_t file, size_t index, const std::string& name,
                          const std::string& path, uint64_t file_bytes) {
  hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) checkpoint_fail("cannot open tensor \"" + name + "\" in " + path);
  struct Close {
    hid_t id;
    ~Close() { H5Dclose(id); }
  } close{ds};
  PieceRef r;
  r.file = index;
  r.name = name;
  const std::string where = path + " tensor \"" + name + "\"";
  read_header(ds, r, path, where);
  std::optional<std::string> shard = read_string_attr(ds, "loom_shard");
  const H5D_layout_t layout = check_storage(ds, r, where);
  try {
    if (shard) check_spec_ranges(*shard, where);
    r.spec = shard ? ShardSpec::from_json(*shard, where) : ShardSpec::whole(r.stored);
    if (r.stored != r.spec.local_shape())
      checkpoint_fail(where + ": stored shape " + shape_str(r.stored) +
                      " does not match its shard " + r.spec.str() + " (expected " +
                      shape_str(r.spec.local_shape()) + ")");
  } catch (const ValueError& e) {
    checkpoint_fail(e.what());
  }
  locate_data(ds, layout, r, file_bytes, where);
  return r;
}

// One flat (row-major) index range [begin, end) of the logical tensor that a piece covers.
struct Range {
  int64_t begin, end;
  size_t piece;
};

// Checks that the pieces of one name agree and tile the logical tensor exactly: the ranges,
// sorted, must neither overlap nor leave a gap (a sweep, so a logical shape claimed by a header
// never sizes an allocation; a piece has at most as many runs as elements the file stores).
void check_tiling(const std::vector<PieceRef*>& refs, const std::vector<std::string>& paths) {
  const PieceRef& first = *refs[0];
  const std::string tname = "tensor \"" + first.name + "\"";
  for (const PieceRef* r : refs) {
    if (r->spec.logical != first.spec.logical || r->dtype != first.dtype)
      checkpoint_fail(tname + ": " + paths[r->file] + " has a " + dtype_name(r->dtype) + " " +
                      shape_str(r->spec.logical) + " piece but " + paths[first.file] + " has " +
                      dtype_name(first.dtype) + " " + shape_str(first.spec.logical));
  }
  const int64_t n = shape_numel(first.spec.logical);
  std::vector<Range> ranges;
  for (size_t i = 0; i < refs.size(); ++i)
    for (const ShardRun& run : shard_runs(refs[i]->spec))
      ranges.push_back({run.logical, run.logical + run.length, i});
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.piece < b.piece;
  });
  int64_t pos = 0, missing = 0, first_gap = -1;
  const Range* last = nullptr;
  for (const Range& r : ranges) {
    if (r.begin < pos) {
      const PieceRef& a = *refs[last->piece];
      const PieceRef& b = *refs[r.piece];
      checkpoint_fail(tname + ": piece " + b.spec.str() + " in " + paths[b.file] +
                      " overlaps piece " + a.spec.str() + " in " + paths[a.file] + " (element " +
                      std::to_string(r.begin) + ")");
    }
    if (r.begin > pos && first_gap < 0) first_gap = pos;
    missing += r.begin - pos;
    pos = r.end;
    last = &r;
  }
  if (pos < n && first_gap < 0) first_gap = pos;
  missing += n - pos;
  if (missing > 0) {
    std::string files;
    for (const PieceRef* r : refs) files += (files.empty() ? "" : ", ") + paths[r->file];
    checkpoint_fail(tname + ": the pieces in " + files + " leave " + std::to_string(missing) +
                    " of " + std::to_string(n) + " elements uncovered (first at flat index " +
                    std::to_string(first_gap) + ")");
  }
}

// The datasets of one HDF5 file that `want` accepts.
std::vector<PieceRef> describe_file(const std::string& path, size_t index,
                                   const std::function<bool(const std::string&)>& want) {
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  hid_t f = ec ? hid_t(-1) : H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) checkpoint_fail("cannot open " + path + " as HDF5");
  struct Close {
    hid_t id;
    ~Close() { H5Fclose(id); }
  } close{f};
  std::vector<std::string> names;
  H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, visit_cb, &names, H5O_INFO_BASIC);
  std::vector<PieceRef> refs;
  for (const std::string& n : names)
    if (!want || want(n)) refs.push_back(describe_dataset(f, index, n, path, file_bytes));
  return refs;
}

}  // namespace

std::map<std::string, StoredTensor> index_tensor_files(
    const std::vector<std::string>& paths, const std::function<bool(const std::string&)>& want) {
  std::vector<PieceRef> refs;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // failures become CheckpointErrors, not stderr
    for (size_t i = 0; i < paths.size(); ++i)
      for (PieceRef& r : describe_file(paths[i], i, want)) refs.push_back(std::move(r));
  }
  std::map<std::string, std::vector<PieceRef*>> by_name;
  for (PieceRef& r : refs) by_name[r.name].push_back(&r);
  std::map<std::string, StoredTensor> out;
  for (const auto& [name, group] : by_name) {
    check_tiling(group, paths);
    StoredTensor& t = out[name];
    t.dtype = group[0]->dtype;
    t.shape = group[0]->spec.logical;
    for (PieceRef* r : group)
      t.pieces.push_back({r->file, r->spec, r->offset, std::move(r->bytes)});
  }
  return out;
}

}  // namespace loom::io::detail

namespace loom::io {

namespace {
// Counts elements whose exponent bits are all ones (NaN or Inf) of an IEEE format stored as U.
template <class U>
int64_t count_non_finite(const Tensor& t, U exponent_mask) {
  const U* p = static_cast<const U*>(t.raw_data());
  int64_t bad = 0;
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) bad += (p[i] & exponent_mask) == exponent_mask;
  return bad;
}
}  // namespace

bool all_finite(const Tensor& t0) {
  if (!t0.defined()) return true;
  Tensor t = t0.detach().to(Device::cpu()).contiguous();
  switch (t.dtype()) {
    case DType::F32: return count_non_finite<uint32_t>(t, 0x7f800000u) == 0;
    case DType::F64: return count_non_finite<uint64_t>(t, 0x7ff0000000000000ull) == 0;
    case DType::BF16: return count_non_finite<uint16_t>(t, 0x7f80u) == 0;
    case DType::F16: return count_non_finite<uint16_t>(t, 0x7c00u) == 0;
    default: return true;
  }
}

std::vector<std::string> non_finite_tensors(const std::map<std::string, Tensor>& tensors,
                                            const std::vector<std::string>& prefixes) {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors) {
    bool selected = prefixes.empty();
    for (const std::string& p : prefixes) selected = selected || name.rfind(p, 0) == 0;
    if (selected && !all_finite(t)) out.push_back(name);
  }
  return out;
}

}  // namespace loom::io

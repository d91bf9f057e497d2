// Fuzz harness: the HDF5 token-dataset reader (data/TokenDataset). Structure-aware: the input does
// not become the file's bytes but decides what a valid HDF5 file written through the HDF5 API holds
// (datasets present or not, their types, ranks, lengths as claimed and as written, chunking and
// compression, values; attributes as scalars, arrays or strings), so the fuzzer explores what
// Loom's reader does with any content. NB: byte-level corruption of the HDF5 container is parsed by
// libhdf5 itself, not by Loom; fuzz_token_dataset_raw (this file with LOOM_FUZZ_RAW) feeds raw
// bytes for running by hand. A dataset that opens is read over every document and a few windows.
// Only DataError may reject an input.
#include <hdf5.h>

#include <vector>

#include "data/TokenDataset.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

namespace {

hid_t pick_type(uint8_t b) {
  const hid_t types[] = {H5T_STD_U16LE, H5T_STD_I32LE, H5T_STD_I64LE, H5T_STD_U8LE,
                         H5T_STD_I16LE, H5T_STD_U32LE, H5T_STD_U64LE, H5T_IEEE_F32LE};
  return types[b % 8];
}

// One dataset: `name` with a type, a claimed length, a written prefix, and a layout, all from `in`.
void write_dataset(hid_t file, const char* name, fuzz::Bytes& in) {
  const uint8_t spec = in.byte();
  if (spec == 0) return;  // absent
  const hid_t type = pick_type(spec);
  const bool two_d = spec & 0x08, chunked = spec & 0x10, deflate = spec & 0x20;
  hsize_t written = in.byte();
  hsize_t claimed = (spec & 0x40) ? in.u64() : written;
  if (!chunked && claimed > (hsize_t(1) << 20)) claimed = written;  // contiguous allocates
  hsize_t dims[2] = {claimed, 2}, maxd[2] = {H5S_UNLIMITED, 2};
  hid_t space = H5Screate_simple(two_d ? 2 : 1, dims, chunked ? maxd : nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunked) {
    hsize_t chunk[2] = {1 + hsize_t(in.byte()), 2};
    H5Pset_chunk(dcpl, two_d ? 2 : 1, chunk);
    if (deflate) H5Pset_deflate(dcpl, 1);
  }
  hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds >= 0 && written > 0 && written <= claimed) {
    std::vector<int64_t> values(written * (two_d ? 2 : 1));
    for (int64_t& v : values) v = int64_t(in.u64(2)) - (in.byte() & 1 ? 8 : 0);
    hsize_t start[2] = {0, 0}, count[2] = {written, 2};
    hid_t mem = H5Screate_simple(two_d ? 2 : 1, count, nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    H5Dwrite(ds, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, values.data());
    H5Sclose(mem);
  }
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
}

// One root attribute: absent, an int64 scalar, an int64 array, or a string.
void write_attr(hid_t file, const char* name, int64_t usual, fuzz::Bytes& in) {
  const uint8_t kind = in.byte() % 5;
  if (kind == 0) return;
  hsize_t n = kind == 2 ? 1 + in.byte() % 8 : 1;
  hid_t space = kind == 2 ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_SCALAR);
  hid_t type = kind == 3 ? H5Tcopy(H5T_C_S1) : H5Tcopy(H5T_STD_I64LE);
  std::string text(in.take(in.byte() % 16));
  if (kind == 3) H5Tset_size(type, text.size() + 1);
  hid_t attr = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr >= 0) {
    std::vector<int64_t> v(n, kind == 1 ? usual : int64_t(in.u64()));
    if (kind == 4) v[0] = int64_t(in.u64());
    H5Awrite(attr, kind == 3 ? type : H5T_NATIVE_INT64,
             kind == 3 ? static_cast<const void*>(text.c_str()) : v.data());
    H5Aclose(attr);
  }
  H5Tclose(type);
  H5Sclose(space);
}

std::string build_file(fuzz::Bytes& in) {
  const std::string path = fuzz::scratch_file("tokens.h5", "");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) throw InternalError("fuzz: cannot create " + path);
  write_dataset(file, "tokens", in);
  write_dataset(file, "doc_offsets", in);
  write_attr(file, "format_version", 1, in);
  write_attr(file, "vocab_size", 300, in);
  write_attr(file, "n_tokens", int64_t(in.byte()), in);
  write_attr(file, "n_docs", 1, in);
  write_attr(file, "tokenizer", 0, in);
  H5Fclose(file);
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Bytes in(data, size);
#ifdef LOOM_FUZZ_RAW
  const std::string path = fuzz::scratch_file("tokens.h5", in.rest());
#else
  const std::string path = build_file(in);
#endif
  fuzz::accept<DataError>([&] {
    data::TokenDataset ds(path);
    for (int64_t d = 0; d < ds.num_docs(); ++d) (void)ds.document(d);
    std::vector<int64_t> window(8);
    for (int64_t start = 0; start + 8 <= ds.size() && start < 64; start += 8)
      ds.read(start, 8, window.data());
  });
  return 0;
}

// Token file writer and validating reader (format in TokenDataset.h).
#include "data/TokenDataset.h"

#include <algorithm>
#include <optional>
#include <filesystem>

#include "core/util/Check.h"
#include "core/util/CheckedMath.h"
#include "data/Hdf5Util.h"

namespace loom::data {
namespace {

h5::Id create_dataset(hid_t file, const char* name, hid_t type, hsize_t n, int level) {
  h5::Id space(H5Screate_simple(1, &n, nullptr));
  h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if (level > 0 && n > 0) {
    hsize_t chunk = std::min<hsize_t>(n, hsize_t(1) << 20);
    H5Pset_chunk(dcpl.get(), 1, &chunk);
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), unsigned(level));
  }
  return h5::Id(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
}

}  // namespace

void write_token_file(const std::string& path, std::span<const int32_t> tokens,
                      std::span<const int64_t> doc_offsets, int32_t vocab_size,
                      const std::string& tokenizer, const std::string& split,
                      int compression_level) {
  LOOM_CHECK(compression_level >= 0 && compression_level <= 9,
             "write_token_file: expected compression_level in [0, 9], got ", compression_level);
  LOOM_CHECK(!doc_offsets.empty() && doc_offsets.front() == 0 &&
                 doc_offsets.back() == int64_t(tokens.size()),
             "write_token_file: expected doc_offsets from 0 to ", tokens.size());
  h5::silence_errors();
  const std::string tmp = path + ".tmp";
  {
    h5::Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    LOOM_CHECK_T(DataError, file.valid(), "write_token_file: cannot create '", tmp, "'");
    const bool narrow = vocab_size <= 65536;
    h5::Id tok = create_dataset(file.get(), "tokens", narrow ? H5T_STD_U16LE : H5T_STD_I32LE,
                                tokens.size(), compression_level);
    herr_t st;
    if (narrow) {
      std::vector<uint16_t> buf(tokens.begin(), tokens.end());
      st = tok.valid() ? H5Dwrite(tok.get(), H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                  buf.data())
                       : -1;
    } else {
      st = tok.valid() ? H5Dwrite(tok.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                  tokens.data())
                       : -1;
    }
    LOOM_CHECK_T(DataError, st >= 0 || tokens.empty(), "write_token_file: writing tokens to '",
                 tmp, "' failed");
    h5::Id off = create_dataset(file.get(), "doc_offsets", H5T_STD_I64LE, doc_offsets.size(), 0);
    LOOM_CHECK_T(DataError,
                 off.valid() && H5Dwrite(off.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL,
                                         H5P_DEFAULT, doc_offsets.data()) >= 0,
                 "write_token_file: writing doc_offsets to '", tmp, "' failed");
    h5::write_attr_i64(file.get(), "format_version", kTokenFileVersion);
    h5::write_attr_i64(file.get(), "vocab_size", vocab_size);
    h5::write_attr_i64(file.get(), "n_tokens", int64_t(tokens.size()));
    h5::write_attr_i64(file.get(), "n_docs", int64_t(doc_offsets.size()) - 1);
    h5::write_attr_str(file.get(), "tokenizer", tokenizer);
    h5::write_attr_str(file.get(), "split", split);
    LOOM_CHECK_T(DataError, H5Fflush(file.get(), H5F_SCOPE_GLOBAL) >= 0,
                 "write_token_file: flushing '", tmp, "' failed");
  }
  std::filesystem::rename(tmp, path);
}

void TokenDataset::fail(const std::string& what) const {
  throw DataError("TokenDataset '" + path_ + "': " + what);
}

TokenDataset::TokenDataset(const std::string& path) : path_(path) {
  h5::silence_errors();
  // A path that names nothing is a mistake in the config or on the command line (exit code 2,
  // README), not a bad data file.
  LOOM_CHECK_T(ConfigError, std::filesystem::exists(path), "TokenDataset '", path,
               "': file does not exist; expected a token dataset made by `loom preprocess`");
  if (H5Fis_hdf5(path.c_str()) <= 0) fail("not an HDF5 file");
  h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file.valid()) fail("cannot open the HDF5 file");
  int64_t version = 0, vocab = 0;
  if (!h5::read_attr_i64(file.get(), "format_version", version))
    fail("no format_version attribute");
  if (version != kTokenFileVersion)
    fail("expected format_version " + std::to_string(kTokenFileVersion) + ", got " +
         std::to_string(version));
  if (!h5::read_attr_i64(file.get(), "vocab_size", vocab) || vocab <= 0 || vocab > INT32_MAX)
    fail("missing or invalid vocab_size attribute");
  vocab_size_ = int32_t(vocab);
  h5::read_attr_str(file.get(), "tokenizer", tokenizer_);
  h5::read_attr_str(file.get(), "split", split_);
  load_arrays(file.get());
  validate();
}

// Opens a 1-D integer dataset; returns it with its length and file type.
h5::Id TokenDataset::open_1d(int64_t file, const char* name, hsize_t& n, h5::Id& type) const {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) fail(std::string("missing dataset '") + name + "'");
  h5::Id ds(H5Dopen2(file, name, H5P_DEFAULT));
  h5::Id space(H5Dget_space(ds.get()));
  if (!ds.valid() || H5Sget_simple_extent_ndims(space.get()) != 1)
    fail(std::string("dataset '") + name + "' is not 1-D");
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  type = h5::Id(H5Dget_type(ds.get()));
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    fail(std::string("dataset '") + name + "' is not an integer array");
  check_backed(ds.get(), n, H5Tget_size(type.get()), name);
  return ds;
}

// NB: the length in a dataset's header is input: before anything is allocated from it, it must be
// backed by the dataset's storage in the file, so a crafted file cannot claim 2^60 tokens. The
// writer stores tokens contiguously or chunked with shuffle + deflate, and deflate compresses at
// most 1032:1 (zlib's documented limit), so a compressed dataset holds at most 1032 bytes per
// stored byte (plus one chunk of slack).
void TokenDataset::check_backed(int64_t ds, unsigned long long n, size_t elem_size,
                                const char* name) const {
  const std::string what = std::string("dataset '") + name + "'";
  std::optional<int64_t> bytes =
      n > uint64_t(INT64_MAX) ? std::nullopt : try_mul(int64_t(n), int64_t(elem_size));
  if (!bytes) fail(what + " claims " + std::to_string(n) + " elements, more than 2^63 bytes");
  if (*bytes == 0) return;
  h5::Id dcpl(H5Dget_create_plist(ds));
  int filters = dcpl.valid() ? H5Pget_nfilters(dcpl.get()) : -1;
  if (filters < 0) fail("cannot read the storage properties of " + what);
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    size_t nelem = 0;
    H5Z_filter_t id = H5Pget_filter2(dcpl.get(), unsigned(i), &flags, &nelem, nullptr, 0,
                                     nullptr, nullptr);
    if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE)
      fail(what + " uses HDF5 filter " + std::to_string(id) +
           "; expected none, shuffle or deflate (what loom preprocess writes)");
  }
  constexpr int64_t kMaxDeflateRatio = 1032;
  constexpr int64_t kChunkSlack = int64_t(1) << 22;  // one 1M-token chunk of int32
  const int64_t stored = int64_t(H5Dget_storage_size(ds));
  const int64_t backed = filters == 0 ? stored : stored * kMaxDeflateRatio + kChunkSlack;
  if (*bytes > backed)
    fail(what + " claims " + std::to_string(n) + " elements (" + std::to_string(*bytes) +
         " bytes) but the file stores " + std::to_string(stored) + " bytes of it" +
         " (truncated, unwritten or crafted file)");
}

void TokenDataset::load_arrays(int64_t file) {
  hsize_t n_tok = 0, n_off = 0;
  h5::Id tok_type, off_type;
  h5::Id tok = open_1d(file, "tokens", n_tok, tok_type);
  h5::Id off = open_1d(file, "doc_offsets", n_off, off_type);
  n_tokens_ = int64_t(n_tok);
  int64_t n_attr = 0;
  if (h5::read_attr_i64(file, "n_tokens", n_attr) && n_attr != n_tokens_)
    fail("attribute n_tokens=" + std::to_string(n_attr) + " but dataset 'tokens' holds " +
         std::to_string(n_tokens_));
  herr_t st = 0;
  if (H5Tget_size(tok_type.get()) <= 2 && H5Tget_sign(tok_type.get()) == H5T_SGN_NONE) {
    narrow_.resize(n_tok);
    if (n_tok)
      st = H5Dread(tok.get(), H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, narrow_.data());
  } else {
    wide_.resize(n_tok);
    if (n_tok)
      st = H5Dread(tok.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, wide_.data());
  }
  if (st < 0) fail("reading dataset 'tokens' failed");
  offsets_.resize(n_off);
  if (n_off &&
      H5Dread(off.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offsets_.data()) < 0)
    fail("reading dataset 'doc_offsets' failed");
}

void TokenDataset::validate() const {
  if (offsets_.empty() || offsets_.front() != 0 || offsets_.back() != n_tokens_)
    fail("expected doc_offsets to run from 0 to n_tokens=" + std::to_string(n_tokens_));
  for (size_t d = 1; d < offsets_.size(); ++d)
    if (offsets_[d] < offsets_[d - 1])
      fail("doc_offsets not monotonic: doc_offsets[" + std::to_string(d) + "]=" +
           std::to_string(offsets_[d]) + " < doc_offsets[" + std::to_string(d - 1) + "]=" +
           std::to_string(offsets_[d - 1]));
  for (int64_t i = 0; i < n_tokens_; ++i) {
    int32_t t = token(i);
    if (t < 0 || t >= vocab_size_)
      fail("token " + std::to_string(i) + " has id " + std::to_string(t) +
           ", expected ids in [0, vocab_size=" + std::to_string(vocab_size_) + ")");
  }
}

void TokenDataset::read(int64_t start, int64_t n, int64_t* out) const {
  LOOM_CHECK(start >= 0 && n >= 0 && start + n <= n_tokens_,
             "TokenDataset.read: expected a range within [0, ", n_tokens_, "), got [", start, ", ",
             start + n, ")");
  if (narrow_.empty()) {
    std::copy(wide_.begin() + start, wide_.begin() + start + n, out);
  } else {
    std::copy(narrow_.begin() + start, narrow_.begin() + start + n, out);
  }
}

std::vector<int32_t> TokenDataset::document(int64_t d) const {
  LOOM_CHECK(d >= 0 && d < num_docs(), "TokenDataset.document: expected a document in [0, ",
             num_docs(), "), got ", d);
  std::vector<int32_t> out;
  for (int64_t i = offsets_[size_t(d)]; i < offsets_[size_t(d) + 1]; ++i) out.push_back(token(i));
  return out;
}

}  // namespace loom::data

// Token dataset files (HDF5): written by preprocess() (Preprocess.h), read by TokenDataset.
//
// File format, version 1 (attributes on the root group):
//   /tokens       uint16 (if vocab_size <= 65536) or int32, 1-D: n_tokens ids, documents back to back
//   /doc_offsets  int64, n_docs + 1: document d is tokens[doc_offsets[d], doc_offsets[d+1])
//   attrs: format_version=1, vocab_size, n_tokens, n_docs (int64); tokenizer, split (strings)
//
//   TokenDataset ds("train.h5");          // validates the whole file, loads tokens into memory
//   std::vector<int64_t> w(T + 1);
//   ds.read(start, T + 1, w.data());
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace loom::data {
namespace h5 {
class Id;
}

inline constexpr int64_t kTokenFileVersion = 1;

// Writes a token file atomically (to "<path>.tmp", then renamed). `compression_level` 0 stores
// the tokens contiguously; 1..9 chunks and deflates them.
void write_token_file(const std::string& path, std::span<const int32_t> tokens,
                      std::span<const int64_t> doc_offsets, int32_t vocab_size,
                      const std::string& tokenizer, const std::string& split,
                      int compression_level = 0);

class TokenDataset {
 public:
  // Opens and validates: file readable HDF5, datasets present with the right shape and type,
  // version known, offsets start at 0, never decrease, end at n_tokens, every id < vocab_size.
  // Every failure is a DataError naming the file.
  explicit TokenDataset(const std::string& path);

  int64_t size() const { return n_tokens_; }  // number of tokens
  int64_t num_docs() const { return int64_t(offsets_.size()) - 1; }
  int32_t vocab_size() const { return vocab_size_; }
  const std::string& tokenizer() const { return tokenizer_; }
  const std::string& split() const { return split_; }
  const std::string& path() const { return path_; }
  std::span<const int64_t> doc_offsets() const { return offsets_; }

  int32_t token(int64_t i) const {
    return narrow_.empty() ? wide_[size_t(i)] : int32_t(narrow_[size_t(i)]);
  }
  // Copies tokens [start, start + n) into out (ValueError if out of range).
  void read(int64_t start, int64_t n, int64_t* out) const;
  std::vector<int32_t> document(int64_t d) const;

 private:
  [[noreturn]] void fail(const std::string& what) const;
  // File handles are passed as int64_t (hid_t) so this header does not include hdf5.h.
  h5::Id open_1d(int64_t file, const char* name, unsigned long long& n, h5::Id& type) const;
  void check_backed(int64_t ds, unsigned long long n, size_t elem_size, const char* name) const;
  void load_arrays(int64_t file);
  void validate() const;

  std::string path_;
  int64_t n_tokens_ = 0;
  int32_t vocab_size_ = 0;
  std::string tokenizer_, split_;
  std::vector<uint16_t> narrow_;  // one of narrow_/wide_ holds the tokens
  std::vector<int32_t> wide_;
  std::vector<int64_t> offsets_;
};

}  // namespace loom::data

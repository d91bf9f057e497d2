// Token dataset files: preprocess() -> TokenDataset round trip (text and JSONL inputs, validation
// split, uint16 and int32 storage), bad inputs, and every corruption case the reader must reject
// with a DataError naming the file.
#include <gtest/gtest.h>
#include <hdf5.h>

#include "core/util/Check.h"
#include "data/BpeTrainer.h"
#include "data/Preprocess.h"
#include "data/TokenDataset.h"
#include "tests/data/DataTestUtil.h"

namespace loom::data {
namespace {

using testing::TempDir;
using testing::write_file;

// A small byte-level BPE tokenizer with <|endoftext|>, trained in memory (fast, no files needed).
const Tokenizer& small_tokenizer() {
  static const Tokenizer tok =
      train_bpe_texts({"the cat sat on the mat. the dog sat on the log. 12345 cats and dogs!"},
                      {.vocab_size = 300, .min_frequency = 2})
          .tokenizer();
  return tok;
}

std::vector<std::string> make_docs(int n) {
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i)
    docs.push_back("document " + std::to_string(i) + ": the cat sat " +
                   std::string(size_t(i % 7), 'x'));
  return docs;
}

std::string jsonl(const std::vector<std::string>& docs) {
  std::string s;
  for (const std::string& d : docs) s += "{\"id\": 1, \"text\": \"" + d + "\"}\n";
  return s;
}

TEST(TokenDatasetTest, PreprocessRoundTripWithValidationSplit) {
  TempDir dir;
  std::vector<std::string> docs = make_docs(40);
  std::string in1 = (dir / "a.jsonl").string(), in2 = (dir / "b.txt").string();
  write_file(in1, jsonl(std::vector<std::string>(docs.begin(), docs.end() - 1)) + "\n");
  write_file(in2, docs.back());
  PreprocessOptions o;
  o.inputs = {in1, in2};
  o.output = (dir / "out.h5").string();
  o.val_fraction = 0.1;
  o.seed = 7;
  const Tokenizer& tok = small_tokenizer();
  PreprocessStats st = preprocess(o, tok);
  EXPECT_EQ(st.val_path, (dir / "out.val.h5").string());
  EXPECT_EQ(st.val_docs, 4);  // round(0.1 * 40)
  EXPECT_EQ(st.train_docs + st.val_docs, 40);
  TokenDataset train(st.train_path), val(st.val_path);
  EXPECT_EQ(train.vocab_size(), tok.vocab_size());
  EXPECT_EQ(train.split(), "train");
  EXPECT_EQ(val.split(), "val");
  EXPECT_EQ(train.tokenizer(), tok.description());
  EXPECT_EQ(train.size(), st.train_tokens);
  // Every document appears exactly once, in input order within each split, ending in EOT.
  std::vector<std::string> seen;
  size_t ti = 0, vi = 0;
  const int32_t eot = *tok.eot_id();
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<int32_t> want = tok.encode(docs[d]);
    want.push_back(eot);
    bool in_train = ti < size_t(train.num_docs()) && train.document(int64_t(ti)) == want;
    bool in_val = vi < size_t(val.num_docs()) && val.document(int64_t(vi)) == want;
    ASSERT_TRUE(in_train != in_val) << "document " << d;
    (in_train ? ti : vi)++;
  }
  EXPECT_EQ(ti, size_t(train.num_docs()));
  EXPECT_EQ(vi, size_t(val.num_docs()));
  // The split depends only on the seed: same seed -> same files; another seed -> another split.
  PreprocessStats again = preprocess(o, tok);
  EXPECT_EQ(TokenDataset(again.val_path).doc_offsets().size(), val.doc_offsets().size());
  o.seed = 8;
  o.output = (dir / "other.h5").string();
  preprocess(o, tok);
  TokenDataset val8((dir / "other.val.h5").string());
  std::vector<int32_t> a, b;
  for (int64_t d = 0; d < val.num_docs(); ++d) for (int32_t t : val.document(d)) a.push_back(t);
  for (int64_t d = 0; d < val8.num_docs(); ++d) for (int32_t t : val8.document(d)) b.push_back(t);
  EXPECT_NE(a, b);
}

TEST(TokenDatasetTest, WideVocabStoresInt32AndCompressionRoundTrips) {
  TempDir dir;
  std::vector<int32_t> tokens = {0, 99999, 65536, 5, 70000};
  std::vector<int64_t> offsets = {0, 2, 5};
  std::string p = (dir / "wide.h5").string();
  write_token_file(p, tokens, offsets, 100000, "test", "train", 4);
  TokenDataset ds(p);
  ASSERT_EQ(ds.size(), 5);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(ds.token(i), tokens[size_t(i)]);
  std::vector<int64_t> w(3);
  ds.read(2, 3, w.data());
  EXPECT_EQ(w, (std::vector<int64_t>{65536, 5, 70000}));
  EXPECT_THROW(ds.read(3, 3, w.data()), ValueError);
  EXPECT_EQ(ds.document(1), (std::vector<int32_t>{65536, 5, 70000}));
}

TEST(TokenDatasetTest, BadPreprocessInputsNameFileAndLine) {
  TempDir dir;
  PreprocessOptions o;
  o.output = (dir / "out.h5").string();
  std::string bad = (dir / "bad.jsonl").string();
  write_file(bad, "{\"text\": \"ok\"}\n{not json}\n");
  o.inputs = {bad};
  try {
    preprocess(o, small_tokenizer());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(bad + " line 2: not valid JSON"), std::string::npos)
        << e.what();
  }
  // A number too large for a double is nlohmann's out_of_range, not a parse_error (found by
  // fuzzing): it escaped raw.
  write_file(bad, "{\"text\": \"ok\", \"n\": 1e999999}\n");
  try {
    preprocess(o, small_tokenizer());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(bad + " line 1: not valid JSON"), std::string::npos)
        << e.what();
  }
  write_file(bad, "{\"text\": \"ok\"}\n\n{\"body\": \"no text field\"}\n");
  try {
    preprocess(o, small_tokenizer());
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(bad + " line 3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"text\""), std::string::npos) << e.what();
  }
  std::string empty = (dir / "empty.txt").string();
  write_file(empty, "");
  o.inputs = {empty};
  EXPECT_THROW(preprocess(o, small_tokenizer()), DataError);
  o.inputs = {(dir / "missing.txt").string()};
  EXPECT_THROW(preprocess(o, small_tokenizer()), DataError);
  EXPECT_FALSE(std::filesystem::exists(o.output));  // nothing half-written
}

// Writes a valid file, applies `mutate` to it with the HDF5 API, and expects the reader to reject
// it with a DataError that names the file and contains `expect`.
void expect_corrupt(const std::function<void(hid_t)>& mutate, const std::string& expect) {
  TempDir dir;
  std::string p = (dir / "ds.h5").string();
  write_token_file(p, std::vector<int32_t>{1, 2, 3, 4}, std::vector<int64_t>{0, 1, 4}, 10, "t",
                   "train");
  hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  mutate(f);
  H5Fclose(f);
  try {
    TokenDataset ds(p);
    ADD_FAILURE() << "expected DataError containing '" << expect << "'";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
  }
}

void set_attr(hid_t f, const char* name, int64_t v) {
  H5Adelete(f, name);
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(s);
}

TEST(TokenDatasetTest, CorruptFilesAreRejectedWithTheFileName) {
  expect_corrupt([](hid_t f) { H5Ldelete(f, "doc_offsets", H5P_DEFAULT); },
                 "missing dataset 'doc_offsets'");
  expect_corrupt([](hid_t f) { H5Ldelete(f, "tokens", H5P_DEFAULT); }, "missing dataset 'tokens'");
  expect_corrupt([](hid_t f) {
    hid_t d = H5Dopen2(f, "doc_offsets", H5P_DEFAULT);
    int64_t bad[3] = {0, 3, 2};
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, bad);
    H5Dclose(d);
  }, "doc_offsets");
  expect_corrupt([](hid_t f) {
    hid_t d = H5Dopen2(f, "doc_offsets", H5P_DEFAULT);
    int64_t bad[3] = {0, 5, 4};
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, bad);
    H5Dclose(d);
  }, "not monotonic");
  expect_corrupt([](hid_t f) { set_attr(f, "format_version", 2); },
                 "expected format_version 1, got 2");
  expect_corrupt([](hid_t f) { set_attr(f, "vocab_size", 4); }, "has id 4");
  expect_corrupt([](hid_t f) { set_attr(f, "n_tokens", 7); }, "n_tokens=7");
  TempDir dir;
  std::string junk = (dir / "junk.h5").string();
  write_file(junk, "this is not hdf5");
  EXPECT_THROW({ TokenDataset ds(junk); }, DataError);
  // A missing file is a config error (exit code 2), found by the drills: it was a DataError (1).
  EXPECT_THROW({ TokenDataset ds((dir / "none.h5").string()); }, ConfigError);
}

// Replaces dataset `name` by a chunked one of `n` elements of `type` whose chunks are never
// written: its header claims n elements, the file stores none.
void replace_with_unwritten(hid_t f, const char* name, hid_t type, hsize_t n) {
  H5Ldelete(f, name, H5P_DEFAULT);
  hsize_t max = H5S_UNLIMITED, chunk = 1024;
  hid_t s = H5Screate_simple(1, &n, &max);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, &chunk);
  hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(s);
}

// Issue 15 D1: dataset lengths come from the file; a header claiming 2^60 tokens made the reader
// allocate from it (std::bad_alloc / length_error escaped raw, or the machine ran out of memory).
TEST(TokenDatasetTest, LengthsNotBackedByTheFileAreRejectedBeforeAllocating) {
  expect_corrupt([](hid_t f) { replace_with_unwritten(f, "tokens", H5T_STD_U16LE, 1ull << 60); },
                 "dataset 'tokens' claims 1152921504606846976 elements");
  expect_corrupt(
      [](hid_t f) { replace_with_unwritten(f, "doc_offsets", H5T_STD_I64LE, 1ull << 40); },
      "dataset 'doc_offsets' claims 1099511627776 elements");
  // 2^62 int64 elements are 2^65 bytes: the byte count itself overflows.
  expect_corrupt(
      [](hid_t f) { replace_with_unwritten(f, "doc_offsets", H5T_STD_I64LE, 1ull << 62); },
      "more than 2^63 bytes");
}

// An array attribute where a scalar is expected was read into one int64 (a buffer overflow).
TEST(TokenDatasetTest, ArrayAttributeWhereAScalarIsExpectedIsRejected) {
  expect_corrupt([](hid_t f) {
    H5Adelete(f, "vocab_size");
    hsize_t n = 64;
    hid_t s = H5Screate_simple(1, &n, nullptr);
    hid_t a = H5Acreate2(f, "vocab_size", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<int64_t> v(64, 10);
    H5Awrite(a, H5T_NATIVE_INT64, v.data());
    H5Aclose(a);
    H5Sclose(s);
  }, "missing or invalid vocab_size");
}

}  // namespace
}  // namespace loom::data

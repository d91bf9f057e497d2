// Tokenize documents and write train/validation token files (see Preprocess.h).
#include "data/Preprocess.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/random/Philox.h"
#include "core/util/Check.h"
#include "data/TokenDataset.h"

namespace loom::data {
namespace {

bool is_jsonl(const std::string& path) {
  auto ends = [&](const std::string& s) {
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".jsonl") || ends(".ndjson");
}

std::string default_val_path(const std::string& out) {
  if (out.size() > 3 && out.compare(out.size() - 3, 3, ".h5") == 0)
    return out.substr(0, out.size() - 3) + ".val.h5";
  return out + ".val";
}

std::string val_path_of(const PreprocessOptions& o) {
  if (o.val_fraction <= 0) return "";
  return o.val_output.empty() ? default_val_path(o.output) : o.val_output;
}

// True when a and b name the same file: equal canonical paths (symlinks and "..", "." resolved
// for the part that exists), or, when both exist, the same inode (hard links).
bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ec1, ec2;
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ec1);
  const fs::path cb = fs::weakly_canonical(fs::absolute(b), ec2);
  if (!ec1 && !ec2 && ca == cb) return true;
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec) && !ec;
}

// Indices of the documents that go to the validation split.
std::vector<char> choose_val(int64_t n, double fraction, uint64_t seed) {
  std::vector<char> is_val(static_cast<size_t>(n), 0);
  if (fraction <= 0.0) return is_val;
  LOOM_CHECK_T(DataError, n >= 2, "preprocess: val_fraction=", fraction,
               " needs at least 2 documents, got ", n);
  int64_t k = std::clamp<int64_t>(std::llround(fraction * double(n)), 1, n - 1);
  std::vector<std::pair<uint64_t, int64_t>> keys(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    philox::U4 r = philox::random4(seed, uint64_t(i));
    keys[size_t(i)] = {(uint64_t(r.x[0]) << 32) | r.x[1], i};
  }
  std::partial_sort(keys.begin(), keys.begin() + k, keys.end());
  for (int64_t j = 0; j < k; ++j) is_val[size_t(keys[size_t(j)].second)] = 1;
  return is_val;
}

}  // namespace

std::vector<std::string> read_documents(const std::string& path, const std::string& text_field) {
  std::error_code ec;
  LOOM_CHECK_T(DataError, !std::filesystem::is_directory(path, ec), "documents: expected a text "
               "or JSONL file, got the directory '", path, "'");
  std::ifstream f(path, std::ios::binary);
  LOOM_CHECK_T(DataError, f.good(), "documents: cannot open input '", path, "'");
  std::vector<std::string> docs;
  if (!is_jsonl(path)) {
    std::ostringstream ss;
    ss << f.rdbuf();
    docs.push_back(ss.str());
    return docs;
  }
  std::string line;
  for (int64_t line_no = 1; std::getline(f, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // NB: not only parse_error: out_of_range.406
      throw DataError("documents: " + path + " line " + std::to_string(line_no) +
                      ": not valid JSON: " + e.what());
    }
    LOOM_CHECK_T(DataError, j.is_object() && j.contains(text_field) && j[text_field].is_string(),
                 "documents: ", path, " line ", line_no, ": expected an object with a string "
                 "field \"", text_field, "\"");
    docs.push_back(j[text_field].get<std::string>());
  }
  return docs;
}

void check_preprocess_paths(const PreprocessOptions& opts) {
  const std::string val = val_path_of(opts);
  for (const std::string& in : opts.inputs) {
    LOOM_CHECK_T(ConfigError, !same_file(opts.output, in), "preprocess: expected an output ",
                 "other than the inputs, got output '", opts.output, "' = input '", in,
                 "' (writing it would replace the input)");
    LOOM_CHECK_T(ConfigError, val.empty() || !same_file(val, in), "preprocess: expected a ",
                 "validation output other than the inputs, got '", val, "' = input '", in, "'");
  }
  LOOM_CHECK_T(ConfigError, val.empty() || !same_file(val, opts.output), "preprocess: expected ",
               "the validation output to differ from the training output, got '", val,
               "' and '", opts.output, "' (the same file)");
}

namespace {

// Writes each split to "<path>.tmp-<pid>", then renames both: no output appears unless all do.
void write_splits(const std::vector<std::vector<int32_t>>& docs, const std::vector<char>& is_val,
                  const PreprocessOptions& opts, const Tokenizer& tokenizer,
                  PreprocessStats& st) {
  const int n_splits = st.val_path.empty() ? 1 : 2;
  std::vector<std::string> tmp;
  for (int split = 0; split < n_splits; ++split) {
    std::vector<int32_t> tokens;
    std::vector<int64_t> offsets{0};
    for (size_t d = 0; d < docs.size(); ++d) {
      if (is_val[d] != split) continue;
      tokens.insert(tokens.end(), docs[d].begin(), docs[d].end());
      offsets.push_back(int64_t(tokens.size()));
    }
    (split ? st.val_docs : st.train_docs) = int64_t(offsets.size()) - 1;
    (split ? st.val_tokens : st.train_tokens) = int64_t(tokens.size());
    tmp.push_back((split ? st.val_path : st.train_path) + ".tmp-" + std::to_string(::getpid()));
    try {
      write_token_file(tmp.back(), tokens, offsets, tokenizer.vocab_size(),
                       tokenizer.description(), split ? "val" : "train", opts.compression_level);
    } catch (...) {
      std::error_code ec;  // best effort: the error being thrown matters more
      for (const std::string& t : tmp) std::filesystem::remove(t, ec);
      throw;
    }
  }
  for (int split = 0; split < n_splits; ++split)
    std::filesystem::rename(tmp[size_t(split)], split ? st.val_path : st.train_path);
}

}  // namespace

PreprocessStats preprocess(const PreprocessOptions& opts, const Tokenizer& tokenizer) {
  LOOM_CHECK(!opts.inputs.empty(), "preprocess: expected at least one input file, got none");
  LOOM_CHECK(!opts.output.empty(), "preprocess: expected an output path");
  LOOM_CHECK(opts.val_fraction >= 0.0 && opts.val_fraction < 1.0,
             "preprocess: expected val_fraction in [0, 1), got ", opts.val_fraction);
  check_preprocess_paths(opts);
  std::optional<int32_t> eot = tokenizer.eot_id();
  LOOM_CHECK(!opts.append_eot || eot.has_value(), "preprocess: append_eot needs a tokenizer with "
             "<|endoftext|> as a special token; hint: set append_eot=false");
  std::vector<std::vector<int32_t>> docs;
  for (const std::string& path : opts.inputs) {
    for (const std::string& text : read_documents(path, opts.text_field)) {
      if (text.empty()) continue;
      docs.push_back(tokenizer.encode(text));
      if (opts.append_eot) docs.back().push_back(*eot);
    }
  }
  std::string inputs;
  for (const std::string& p : opts.inputs) inputs += (inputs.empty() ? "" : ", ") + p;
  LOOM_CHECK_T(DataError, !docs.empty(), "preprocess: no documents found in ", inputs,
               " (all inputs empty)");
  std::vector<char> is_val = choose_val(int64_t(docs.size()), opts.val_fraction, opts.seed);
  PreprocessStats st;
  st.train_path = opts.output;
  st.val_path = val_path_of(opts);
  write_splits(docs, is_val, opts, tokenizer, st);
  return st;
}

}  // namespace loom::data

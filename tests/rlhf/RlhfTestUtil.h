// Helpers for the rlhf/ tests: a byte-level tokenizer (256 single-byte tokens, no merges, then
// <|endoftext|> = 256) so every character is exactly one token and expected ids are plain bytes,
// and a per-test temporary directory for JSONL files.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/BpeTrainer.h"
#include "data/ByteLevel.h"
#include "data/Tokenizer.h"

namespace loom::rlhf::testing {

// with_eot = false leaves out <|endoftext|> (to test the error for a tokenizer without one).
inline data::Tokenizer byte_tokenizer(bool with_eot = true) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 256; ++i) tokens.push_back(data::bytes_to_token(std::string(1, char(i))));
  if (!with_eot) return data::Tokenizer::from_vocab(tokens, {}, {});
  tokens.push_back("<|endoftext|>");
  return data::Tokenizer::from_vocab(tokens, {}, {"<|endoftext|>"});
}

// Writes byte_tokenizer()'s files (vocab.json in GPT-2's format, an empty merges.txt), as a run
// config names them in data.tokenizer_vocab / data.tokenizer_merges.
inline void save_byte_tokenizer(const std::string& vocab_json, const std::string& merges_txt) {
  data::BpeModel m;
  for (int i = 0; i < 256; ++i) m.tokens.push_back(data::bytes_to_token(std::string(1, char(i))));
  m.tokens.push_back("<|endoftext|>");
  m.special_tokens = {"<|endoftext|>"};
  data::save_bpe(m, vocab_json, merges_txt);
}

// The byte ids of `s` under byte_tokenizer().
inline std::vector<int32_t> bytes_of(const std::string& s) {
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(int32_t(c));
  return out;
}

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("loom_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes `text` to a file named `name` in the directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::filesystem::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace loom::rlhf::testing

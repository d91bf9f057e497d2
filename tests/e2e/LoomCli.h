// Helpers for end-to-end tests that run the real `loom` binary in a fresh process.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/TokenDataset.h"

namespace loom::e2e {

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs a shell command line and captures its output (stdout and stderr) and exit code.
inline RunResult run_shell(const std::string& command) {
  std::string cmd = command + " 2>&1";
  RunResult r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `loom <args>` (a shell command line) with environment assignments ("A=1 B=2 ", or "")
// before the binary, and captures its output (stdout and stderr).
inline RunResult run_loom_env(const std::string& env, const std::string& args) {
  return run_shell(env + std::string(LOOM_BIN) + " " + args);
}

// Runs `loom <args>` in this process's environment.
inline RunResult run_loom(const std::string& args) { return run_loom_env("", args); }

// A scratch directory removed at the end of the test. The pid keeps test processes that CTest
// runs in parallel (one per test case) out of each other's directories.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              ("loom_e2e_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A token dataset of n random ids in [0, vocab) with 10 documents (fixed seed).
inline void write_random_dataset(const std::string& path, int64_t n, int32_t vocab,
                                 uint32_t seed = 7) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (auto& t : tokens) t = int32_t(rng() % uint32_t(vocab));
  std::vector<int64_t> offsets;
  for (int64_t d = 0; d <= 10; ++d) offsets.push_back(d * n / 10);
  data::write_token_file(path, tokens, offsets, vocab, "random", "train");
}

// The tiny test-plan model on a random dataset, as a pbtxt.
inline std::string tiny_config(const TempDir& dir, int64_t max_steps) {
  return "name: \"t\"\nmax_steps: " + std::to_string(max_steps) + "\noutput_dir: \"" +
         dir.file("run") + "\"\n" +
         "model { n_layer: 2 n_head: 4 n_embd: 32 vocab_size: 64 block_size: 16 dropout: 0.1 }\n"
         "data { train_path: \"" + dir.file("train.h5") + "\" val_path: \"" + dir.file("val.h5") +
         "\" seq_len: 16 }\n"
         "optimizer { lr: 3e-3 }\nschedule { warmup_steps: 3 decay_steps: 20 }\n"
         "batch { micro_batch_size: 2 global_batch_size: 4 }\n"
         "eval { interval: 5 steps: 2 }\ncheckpoint { interval: 5 }\nlogging { progress: OFF }\n";
}

// The tiny model's run in `dir`: random train.h5 (4000 tokens) and val.h5 (600), and cfg.pbtxt
// (tiny_config with max_steps).
inline void write_tiny_run(const TempDir& dir, int64_t max_steps) {
  write_random_dataset(dir.file("train.h5"), 4000, 64);
  write_random_dataset(dir.file("val.h5"), 600, 64, 8);
  write_file(dir.file("cfg.pbtxt"), tiny_config(dir, max_steps));
}

// The values of `key` in metrics.jsonl records that have it, in order.
inline std::vector<double> values_of(const std::string& metrics_path, const std::string& key) {
  std::ifstream f(metrics_path);
  std::vector<double> out;
  const std::string pat = "\"" + key + "\": ";
  for (std::string line; std::getline(f, line);) {
    size_t p = line.find(pat);
    if (p != std::string::npos) out.push_back(std::stod(line.substr(p + pat.size())));
  }
  return out;
}

// The "loss" values of metrics.jsonl, as the exact text written.
inline std::vector<std::string> losses_of(const std::string& metrics_path) {
  std::ifstream f(metrics_path);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);) {
    size_t p = line.find("\"loss\": ");
    if (p == std::string::npos) continue;
    size_t e = line.find_first_of(",}", p);
    out.push_back(line.substr(p + 8, e - p - 8));
  }
  return out;
}

}  // namespace loom::e2e

// Shared pieces of the multi-rank Trainer tests (DataParallel_mpi_test.cpp, ModelParallelLayouts.cpp):
// a scratch directory every rank sees, a learnable token dataset, the tiny-GPT config, one
// Trainer run (single process or every MPI rank) and the relative-error comparisons the issue's
// pass criteria are stated in.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "data/TokenDataset.h"
#include "config/ConfigLoader.h"
#include "parallel/comm/MpiCommunicator.h"
#include "io/Checkpoint.h"
#include "train/Trainer.h"

namespace loom::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// One scratch directory for all ranks (rank 0 names and fills it); removed at the end.
class SharedDir {
 public:
  SharedDir() {
    long pid = world_rank() == 0 ? long(::getpid()) : 0;
    MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    path_ = std::filesystem::temp_directory_path() / ("loom_mpi_trainer_test_" + std::to_string(pid));
    if (world_rank() == 0) {
      std::filesystem::remove_all(path_);
      std::filesystem::create_directories(path_);
      write_dataset(file("train.h5"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ~SharedDir() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) std::filesystem::remove_all(path_);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static void write_dataset(const std::string& path) {
    // Learnable: mostly the successor rule t -> (7t + 3) mod 64, with 10% random tokens.
    std::mt19937 rng(11);
    std::vector<int32_t> tokens(16384);
    int32_t prev = 0;
    for (auto& t : tokens) {
      t = rng() % 10u == 0 ? int32_t(rng() % 64u) : (7 * prev + 3) % 64;
      prev = t;
    }
    std::vector<int64_t> offsets;
    for (int64_t d = 0; d <= 8; ++d) offsets.push_back(d * int64_t(tokens.size()) / 8);
    data::write_token_file(path, tokens, offsets, 64, "random", "train");
  }
  std::filesystem::path path_;
};

// Tiny GPT, 20 steps, 2 micro-batches of 2 sequences per DP rank and step (global batch 4*dp).
// No biases by default: the key part of the QKV bias has an exactly zero gradient (softmax is
// shift invariant), so its "gradient" is rounding noise that AdamW normalises to full-size steps
// which differ with any change of summation order (TESTPLAN header). The SGD test keeps biases.
inline std::string write_config(const SharedDir& dir, int dp) {
  std::string path = dir.file("dp.pbtxt");
  if (world_rank() == 0) {
    std::ofstream(path)
        << "name: \"dp\"\nseed: 5\nmax_steps: 20\noutput_dir: \"" << dir.file("run") << "\"\n"
        << "model { n_layer: 2 n_head: 2 n_embd: 32 vocab_size: 64 block_size: 16 dropout: 0 bias: false }\n"
        << "data { train_path: \"" << dir.file("train.h5") << "\" seq_len: 16 }\n"
        << "optimizer { lr: 3e-3 grad_clip: 1.0 weight_decay: 0.1 }\n"
        << "schedule { warmup_steps: 3 }\n"
        << "batch { micro_batch_size: 2 global_batch_size: " << 4 * dp << " }\n"
        << "eval { interval: 0 }\ncheckpoint { interval: 0 resume: \"none\" }\n"
        << "logging { progress: OFF tensorboard: false }\n";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

struct RunResult {
  std::vector<double> losses;
  std::vector<std::pair<std::string, Tensor>> params;
  std::string checkpoint;
};

inline RunResult run_training(const std::string& cfg_path, std::vector<std::string> sets, bool distributed) {
  int world = distributed ? world_size() : 1;
  config::RunConfig cfg = config::resolve(cfg_path, sets, world);
  std::shared_ptr<Communicator> comm;
  if (distributed) comm = MpiCommunicator::world();
  train::Trainer t(cfg, comm);
  train::TrainSummary s = t.run();
  RunResult r{s.losses, {}, s.last_checkpoint};
  for (const auto& [name, p] : t.model().named_parameters()) r.params.emplace_back(name, p.detach().clone());
  return r;
}

inline double rel_diff(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Losses and parameters of `got` against `want` within `tol` relative (0: bitwise).
inline void expect_match(const RunResult& got, const RunResult& want, double tol) {
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t i = 0; i < got.losses.size(); ++i) {
    if (tol == 0.0)
      EXPECT_EQ(got.losses[i], want.losses[i]) << "step " << i + 1;
    else
      EXPECT_LE(std::abs(got.losses[i] - want.losses[i]), tol * std::abs(want.losses[i]))
          << "step " << i + 1 << ": " << got.losses[i] << " vs " << want.losses[i];
  }
  ASSERT_EQ(got.params.size(), want.params.size());
  for (size_t i = 0; i < got.params.size(); ++i) {
    ASSERT_EQ(got.params[i].first, want.params[i].first);
    if (tol == 0.0)
      EXPECT_EQ(got.params[i].second.to_vector<float>(), want.params[i].second.to_vector<float>())
          << got.params[i].first;
    else
      EXPECT_LE(rel_diff(got.params[i].second, want.params[i].second), tol)
          << got.params[i].first;
  }
}

}  // namespace loom::test

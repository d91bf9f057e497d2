// Peak memory of real training runs under tensor / pipeline layouts and activation recomputation
// (issue 11's memory figures): each case runs `loom train` (under mpirun for several ranks) on
// random tokens for a few steps and reads back every rank's peak RSS, the final loss and the wall
// time; `loom plan` gives its per-rank peak estimate for the same config. One JSON line per case,
// then the ratios the issue states, as JSON lines too. Not a unit test: run it by hand.
//   build/bin/bench_memory --loom build/bin/loom [--only NAME,...] [--steps 2] [--keep 1]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "data/TokenDataset.h"

namespace {

struct Case {
  std::string name, preset;
  int tp = 1, pp = 1;
  int64_t micro = 1, seq = 64;
  std::string recompute = "NONE";
  int dp = 1;
  bool zero = false;  // parallel.zero_stage=1
  int ranks() const { return tp * pp * dp; }
};

// The cases behind issue 11's figures.
const std::vector<Case> kCases = {
    {"124m_b8_t128", "gpt2-124m", 1, 1, 8, 128},
    {"124m_b8_t256_none", "gpt2-124m", 1, 1, 8, 256, "NONE"},
    {"124m_b8_t256_full", "gpt2-124m", 1, 1, 8, 256, "FULL"},
    {"350m_single", "gpt2-350m", 1, 1, 1, 64},
    {"350m_tp4", "gpt2-350m", 4, 1, 1, 64},
    {"350m_tp2_pp2", "gpt2-350m", 2, 2, 1, 64},
    {"774m_single", "gpt2-774m", 1, 1, 1, 64},
    {"774m_tp4_pp2", "gpt2-774m", 4, 2, 1, 64},
    // Data parallel: replicas hold every gradient once, in the reducer's buckets.
    {"124m_dp2", "gpt2-124m", 1, 1, 1, 64, "NONE", 2},
    {"124m_dp2_zero1", "gpt2-124m", 1, 1, 1, 64, "NONE", 2, true},
};

struct Outcome {
  double rss_max = 0, rss_sum = 0, tensor_max = 0, plan_max = 0, final_loss = 0, seconds = 0, ms_per_step = 0;
  bool ok = false;
  std::string log;
};

std::string run(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  status = pclose(p);
  return out;
}

double match(const std::string& text, const std::string& pattern) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(pattern)) ? std::atof(m[1].str().c_str()) : 0.0;
}

// Random tokens of GPT-2's vocabulary: enough windows for `steps` steps of every case.
void write_tokens(const std::string& path, int64_t n) {
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (auto& t : tokens) t = int32_t(rng() % 50257u);
  std::vector<int64_t> offsets = {0, n};
  loom::data::write_token_file(path, tokens, offsets, 50257, "random", "train");
}

std::string sets(const Case& c, const std::string& dir, int steps) {
  std::ostringstream s;
  for (const std::string& kv :
       {"model.preset=" + c.preset, "parallel.tp=" + std::to_string(c.tp),
        "parallel.pp=" + std::to_string(c.pp), "parallel.dp=" + std::to_string(c.dp),
        "parallel.zero_stage=" + std::to_string(c.zero ? 1 : 0),
        "batch.micro_batch_size=" + std::to_string(c.micro),
        // pp micro-batches per replica and step, the fewest 1F1B runs with (one for one stage)
        "batch.global_batch_size=" + std::to_string(c.micro * c.pp * c.dp),
        "data.seq_len=" + std::to_string(c.seq), "recompute=" + c.recompute,
        "max_steps=" + std::to_string(steps), "output_dir=" + dir + "/run_" + c.name,
        "checkpoint.dir=" + dir + "/ck_" + c.name})
    s << " --set " << kv;
  return s.str();
}

Outcome run_case(const Case& c, const std::string& loom, const std::string& cfg,
                 const std::string& dir, int steps) {
  Outcome o;
  int status = 0;
  const std::string plan = run(loom + " plan " + cfg + " --world " + std::to_string(c.ranks()) +
                                   sets(c, dir, steps),
                               status);
  o.plan_max = match(plan, R"(# peak per rank: max ([0-9.]+) MiB)");
  std::string cmd = loom + " train " + cfg + sets(c, dir, steps);
  if (c.ranks() > 1)
    cmd = "OMP_NUM_THREADS=1 mpirun -np " + std::to_string(c.ranks()) +
          " --oversubscribe --allow-run-as-root " + cmd;
  const auto t0 = std::chrono::steady_clock::now();
  o.log = run(cmd, status);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.ok = status == 0;
  o.rss_max = match(o.log, R"(peak RSS ([0-9.]+) MiB on the largest rank)");
  o.rss_sum = match(o.log, R"(MiB on the largest rank, ([0-9.]+) MiB over)");
  o.tensor_max = match(o.log, R"(peak tensor memory ([0-9.]+) MiB)");
  o.final_loss = match(o.log, R"(final loss ([0-9.]+))");
  std::ifstream metrics(dir + "/run_" + c.name + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(metrics, line))
    if (line.find("\"step_ms\"") != std::string::npos) last = line;
  if (!last.empty()) o.ms_per_step = nlohmann::json::parse(last).value("step_ms", 0.0);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  std::string loom = "build/bin/loom", only;
  int steps = 2;
  bool keep = false;  // keep the scratch directory (configs, tokens, runs) for a closer look
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i], value = i + 1 < argc ? argv[i + 1] : "";
    if (flag == "--loom" && !value.empty()) {
      loom = value;
    } else if (flag == "--only" && !value.empty()) {
      only = value;
    } else if (flag == "--steps" && std::atoi(value.c_str()) >= 1) {
      steps = std::atoi(value.c_str());
    } else if (flag == "--keep" && (value == "0" || value == "1")) {
      keep = value == "1";
    } else {  // --help included: a benchmark of many minutes never starts on a typo
      std::fprintf(stderr, "usage: bench_memory [--loom BIN] [--only NAME,...] [--steps N>=1] "
                           "[--keep 0|1]; got \"%s\"\n", flag.c_str());
      return flag == "--help" || flag == "-h" ? 0 : 2;
    }
  }
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("loom_bench_memory_" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  write_tokens(dir + "/tokens.h5", 8 * 256 * (steps + 2));
  const std::string cfg = dir + "/base.pbtxt";
  std::ofstream(cfg) << "name: \"mem\"\nseed: 1\ndata { train_path: \"" << dir
                     << "/tokens.h5\" shuffle: false }\n"
                     << "optimizer { lr: 1e-4 }\nschedule { warmup_steps: 0 }\n"
                     << "eval { interval: 0 }\ncheckpoint { interval: 0 }\n"
                     << "logging { progress: OFF tensorboard: false }\n";
  std::map<std::string, Outcome> got;
  for (const Case& c : kCases) {
    if (!only.empty() && ("," + only + ",").find("," + c.name + ",") == std::string::npos) continue;
    Outcome o = run_case(c, loom, cfg, dir, steps);
    nlohmann::json j = {{"case", c.name},          {"ranks", c.ranks()},
                        {"ok", o.ok},              {"peak_rss_mb_max", o.rss_max},
                        {"peak_rss_mb_sum", o.rss_sum},
                        {"peak_tensor_mb_max", o.tensor_max}, {"plan_peak_mb_max", o.plan_max},
                        {"final_loss", o.final_loss},   {"ms_per_step_last", o.ms_per_step},
                        {"wall_s", o.seconds}};
    if (o.plan_max > 0 && o.rss_max > 0) j["plan_error"] = o.plan_max / o.rss_max - 1.0;
    std::printf("%s\n", j.dump().c_str());
    if (!o.ok) std::fprintf(stderr, "%s failed:\n%s\n", c.name.c_str(), o.log.c_str());
    std::fflush(stdout);
    got[c.name] = o;
  }
  auto ratio = [&](const char* name, const std::string& a, const std::string& b, double x,
                   double y) {
    if (got.count(a) && got.count(b) && y > 0)
      std::printf("%s\n", nlohmann::json({{"ratio", name}, {"value", x / y}}).dump().c_str());
  };
  auto rss = [&](const std::string& n) { return got.count(n) ? got[n].rss_max : 0.0; };
  ratio("350m_tp4_largest_over_single", "350m_tp4", "350m_single", rss("350m_tp4"),
        rss("350m_single"));
  ratio("350m_tp2_pp2_largest_over_single", "350m_tp2_pp2", "350m_single", rss("350m_tp2_pp2"),
        rss("350m_single"));
  ratio("774m_tp4_pp2_sum_over_single", "774m_tp4_pp2", "774m_single",
        got.count("774m_tp4_pp2") ? got["774m_tp4_pp2"].rss_sum : 0.0, rss("774m_single"));
  ratio("124m_full_recompute_peak_over_none", "124m_b8_t256_full", "124m_b8_t256_none",
        rss("124m_b8_t256_full"), rss("124m_b8_t256_none"));
  if (got.count("124m_b8_t256_full") && got.count("124m_b8_t256_none"))
    ratio("124m_full_recompute_step_time_over_none", "124m_b8_t256_full", "124m_b8_t256_none",
          got["124m_b8_t256_full"].ms_per_step, got["124m_b8_t256_none"].ms_per_step);
  if (keep)
    std::fprintf(stderr, "bench_memory: kept %s\n", dir.c_str());
  else
    std::filesystem::remove_all(dir);
  return 0;
}

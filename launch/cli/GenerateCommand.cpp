// `loom generate`: continue a prompt with a checkpoint's model (models/Generate.h: KV cache,
// greedy or temperature / top-k / top-p sampling, deterministic for a seed). The model shape comes
// from the checkpoint's resolved config, its weights only (not the optimizer state); the tokenizer
// from the flags, else the one the checkpoint carries, else from the config's data.tokenizer_*
// paths, else from <root>/tokenizer/ (checkpoints converted from Hugging Face).
// Prints the text (prompt + continuation), or with --print-ids the new token ids, one line per
// sample. Flag errors are ConfigError (exit 2), checkpoint problems CheckpointError (exit 3).
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/util/Check.h"
#include "data/Tokenizer.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "launch/cli/ModelSource.h"
#include "config/ConfigLoader.h"
#include "models/Generate.h"
#include "io/Checkpoint.h"
#include "train/Trainer.h"

namespace loom::cli {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

std::string existing(const std::string& path, const char* field) {
  LOOM_CHECK_T(ConfigError, fs::exists(path), "loom generate: the checkpoint config's ", field,
               " = \"", path, "\" does not exist; pass --vocab/--merges or --tokenizer-json");
  return path;
}

// Flags first, then the tokenizer the checkpoint carries, then the run config's data.tokenizer_*
// fields, then <root>/tokenizer/.
data::Tokenizer load_tokenizer(const Verb& a, const config::RunConfig& cfg,
                               const std::string& step_dir) {
  if (a.has("tokenizer-json"))
    return data::Tokenizer::from_tokenizer_json(a.get("tokenizer-json", ""));
  LOOM_CHECK_T(ConfigError, a.has("vocab") == a.has("merges"),
               "loom generate: expected --vocab and --merges together, got only --",
               a.has("vocab") ? "vocab" : "merges");
  if (a.has("vocab")) return data::Tokenizer::from_files(a.get("vocab", ""), a.get("merges", ""));
  const io::TokenizerFiles carried = io::checkpoint_tokenizer(step_dir);
  if (!carried.tokenizer_json.empty())
    return data::Tokenizer::from_tokenizer_json(carried.tokenizer_json);
  if (!carried.vocab_json.empty())
    return data::Tokenizer::from_files(carried.vocab_json, carried.merges_txt);
  const auto& d = cfg.data();
  if (!d.tokenizer_json().empty())
    return data::Tokenizer::from_tokenizer_json(
        existing(d.tokenizer_json(), "data.tokenizer_json"));
  if (!d.tokenizer_vocab().empty() && !d.tokenizer_merges().empty())
    return data::Tokenizer::from_files(existing(d.tokenizer_vocab(), "data.tokenizer_vocab"),
                                       existing(d.tokenizer_merges(), "data.tokenizer_merges"));
  fs::path tok_dir = fs::absolute(step_dir).parent_path() / "tokenizer";
  if (fs::exists(tok_dir / "tokenizer.json"))
    return data::Tokenizer::from_tokenizer_json((tok_dir / "tokenizer.json").string());
  if (fs::exists(tok_dir / "vocab.json") && fs::exists(tok_dir / "merges.txt"))
    return data::Tokenizer::from_files((tok_dir / "vocab.json").string(),
                                       (tok_dir / "merges.txt").string());
  throw ConfigError(
      "loom generate: no tokenizer: pass --vocab and --merges or --tokenizer-json (the "
      "checkpoint's config sets neither data.tokenizer_json nor data.tokenizer_vocab + "
      "data.tokenizer_merges, and " +
      tok_dir.string() + " does not exist); or use --prompt-ids with --print-ids");
}

models::SamplingOptions sampling_options(const Verb& a) {
  models::SamplingOptions o;
  o.max_new_tokens = a.get_int("max-new-tokens", o.max_new_tokens, 0, kMaxInt32);
  o.temperature = a.get_double("temperature", o.temperature, 0.0, 1e6);
  o.top_k = a.get_int("top-k", o.top_k, 0, kMaxInt32);
  o.top_p = a.get_double("top-p", o.top_p, 0.0, 1.0);
  o.seed = uint64_t(a.get_int("seed", 0, 0, kMaxInt64));
  LOOM_CHECK_T(ConfigError, o.top_p > 0.0, "loom generate: expected --top-p in (0, 1], got ",
               o.top_p);
  LOOM_CHECK_T(ConfigError, !(a.has("eos-id") && a.flag("ignore-eos")),
               "loom generate: expected at most one of --eos-id and --ignore-eos, got both");
  return o;
}

std::string join_ids(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

int run_generate(const Verb& a) {
  LOOM_CHECK_T(ConfigError, a.has("prompt") != a.has("prompt-ids"),
               "loom generate: expected exactly one of --prompt and --prompt-ids; see `loom "
               "generate --help`");
  models::SamplingOptions opts = sampling_options(a);
  const int64_t num_samples = a.get_int("num-samples", 1, 1, 1 << 20);
  const std::string step_dir =
      resolve_step_dir("loom generate: --checkpoint", a.require("checkpoint"));
  const io::CheckpointReader ck(step_dir, io::LoadOptions::weights_only());
  const config::RunConfig cfg = checkpoint_config(ck, "loom generate");

  std::optional<data::Tokenizer> tok;
  if (a.has("prompt") || !a.flag("print-ids")) tok.emplace(load_tokenizer(a, cfg, step_dir));
  std::vector<int64_t> prompt;
  if (a.has("prompt")) {
    for (int32_t id : tok->encode(a.get("prompt", ""))) prompt.push_back(id);
  } else {
    prompt = a.get_int_list("prompt-ids", 0, kMaxInt32);
  }
  const models::GPTConfig gc = train::gpt_config_from(cfg);
  // Never draw a padding row, nor a model row the tokenizer has no token for.
  opts.vocab_size = cfg.model().vocab_size();
  if (tok) opts.vocab_size = std::min<int64_t>(opts.vocab_size, tok->vocab_size());
  LOOM_CHECK_T(ConfigError, !prompt.empty(), "loom generate: expected a non-empty prompt");
  LOOM_CHECK_T(ConfigError, int64_t(prompt.size()) <= gc.block_size, "loom generate: expected a ",
               "prompt of at most ", gc.block_size, " tokens (the model's block_size), got ",
               prompt.size());
  for (int64_t id : prompt)
    LOOM_CHECK_T(ConfigError, id >= 0 && id < opts.vocab_size, "loom generate: expected prompt ",
                 "ids in [0, ", opts.vocab_size, "), got ", id);
  if (a.has("eos-id")) opts.eos_id = a.get_int("eos-id", 0, 0, kMaxInt32);
  if (!a.has("eos-id") && !a.flag("ignore-eos") && tok && tok->eot_id())
    opts.eos_id = *tok->eot_id();

  std::string device = a.get("device", cfg.device() == config::RunConfig::CUDA ? "cuda" : "cpu");
  LOOM_CHECK_T(ConfigError, device == "cpu" || device == "cuda",
               "loom generate: expected --device cpu or cuda, got ", device);
  models::GPT model(gc, {}, DType::F32, device == "cuda" ? Device::cuda(0) : Device::cpu());
  train::load_checkpoint_model(model, cfg, ck);  // a LoRA run: base + adapters

  std::vector<std::vector<int64_t>> prompts(size_t(num_samples), prompt);
  std::vector<std::vector<int64_t>> out = models::generate(model, prompts, opts);
  for (size_t s = 0; s < out.size(); ++s) {
    if (a.flag("print-ids")) {
      std::printf("%s\n", join_ids(out[s]).c_str());
      continue;
    }
    std::vector<int32_t> all(prompt.begin(), prompt.end());
    all.insert(all.end(), out[s].begin(), out[s].end());
    if (out.size() > 1) std::printf("--- sample %zu ---\n", s + 1);
    std::printf("%s\n", tok->decode(all).c_str());
  }
  return 0;
}

}  // namespace

void add_generate(Cli& cli) {
  cli.verb(cli.root(), "generate", "continue a prompt with a checkpoint's model", run_generate)
      .value("checkpoint", "DIR", "a checkpoint root (its newest checkpoint is used) or a step dir")
      .value("prompt", "TEXT", "prompt text, encoded with the tokenizer")
      .value("prompt-ids", "ID,ID,...", "prompt token ids, comma-separated (instead of --prompt)")
      .value("max-new-tokens", "N", "tokens to generate per sample (default 64)")
      .value("temperature", "X", "sampling temperature, 0 = greedy (default 1)")
      .value("top-k", "K", "sample from the K most probable tokens, 0 = all (default 0)")
      .value("top-p", "P", "nucleus sampling: smallest set with mass >= P, in (0,1] (default 1)")
      .value("seed", "N", "sampling seed (default 0)")
      .value("num-samples", "N", "samples of the prompt, drawn as one batch (default 1)")
      .value("eos-id", "ID", "stop a sample at this id (default: the tokenizer's <|endoftext|>)")
      .boolean("ignore-eos", "never stop before --max-new-tokens")
      .boolean("print-ids", "print the new token ids instead of the text")
      .value("device", "DEV", "cpu or cuda (default: the checkpoint config's device)")
      .value("vocab", "FILE", "vocab.json of a byte-level BPE tokenizer (with --merges)")
      .value("merges", "FILE", "merges.txt (with --vocab)")
      .value("tokenizer-json", "FILE",
             "a Hugging Face tokenizer.json (instead of --vocab/--merges)");
}

}  // namespace loom::cli

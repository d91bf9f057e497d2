// `loom generate`: continue a prompt, or every line of a prompts file, with a checkpoint's model
// or a Hugging Face directory's ("hf:DIR") (models/Generate.h: one batch of all prompts x
// --num-samples, KV cache, greedy or temperature / top-k / top-p sampling, deterministic for a
// seed). The model shape comes from the checkpoint's resolved config (or config.json), its weights
// only (not the optimizer state); the tokenizer from the flags, else the HF directory's, else the
// one the checkpoint carries, else from the config's data.tokenizer_* paths, else from
// <root>/tokenizer/ (checkpoints converted from Hugging Face). Prints the text (prompt +
// continuation), or with --print-ids the new token ids, one line per sample, prompt by prompt.
// Flag errors are ConfigError (exit 2), checkpoint problems CheckpointError (exit 3).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/util/Check.h"
#include "data/Tokenizer.h"
#include "launch/cli/Cli.h"
#include "launch/cli/Commands.h"
#include "launch/cli/ModelSource.h"
#include "models/Generate.h"
#include "io/Checkpoint.h"
#include "io/HfConvert.h"

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

// An HF directory's own tokenizer: tokenizer.json, else vocab.json + merges.txt.
data::Tokenizer hf_tokenizer(const std::string& dir) {
  const io::HfTokenizerFiles t = io::detail::find_hf_tokenizer(dir);
  if (!t.tokenizer_json.empty()) return data::Tokenizer::from_tokenizer_json(t.tokenizer_json);
  LOOM_CHECK_T(ConfigError, !t.vocab_json.empty(), "loom generate: ", dir, " has no tokenizer ",
               "(tokenizer.json or vocab.json + merges.txt); pass --vocab and --merges or ",
               "--tokenizer-json, or use --prompt-ids with --print-ids");
  return data::Tokenizer::from_files(t.vocab_json, t.merges_txt);
}

// Flags first; for "hf:DIR" the directory's tokenizer; for a Loom checkpoint the tokenizer it
// carries, then the run config's data.tokenizer_* fields, then <root>/tokenizer/.
data::Tokenizer load_tokenizer(const Verb& a, const LoadedModel& m) {
  if (a.has("tokenizer-json"))
    return data::Tokenizer::from_tokenizer_json(a.get("tokenizer-json", ""));
  LOOM_CHECK_T(ConfigError, a.has("vocab") == a.has("merges"),
               "loom generate: expected --vocab and --merges together, got only --",
               a.has("vocab") ? "vocab" : "merges");
  if (a.has("vocab")) return data::Tokenizer::from_files(a.get("vocab", ""), a.get("merges", ""));
  if (!m.config) return hf_tokenizer(m.description.substr(3));  // "hf:DIR"
  const std::string& step_dir = m.description;
  const config::RunConfig& cfg = *m.config;
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

const char* const kPromptFlags[] = {"prompt", "prompt-ids", "prompts-file", "prompt-ids-file"};

// The lines of a prompts file, without a trailing '\r'; blank lines are skipped.
std::vector<std::string> prompt_lines(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  LOOM_CHECK_T(ConfigError, in.good(), "loom generate: cannot read --", flag, " ", path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
  }
  LOOM_CHECK_T(ConfigError, !lines.empty(), "loom generate: expected at least one prompt in --",
               flag, " ", path, ", got none");
  return lines;
}

// "5,17,42" -> ids; `where` names the flag and line for the error.
std::vector<int64_t> parse_id_line(const std::string& line, const std::string& where) {
  std::vector<int64_t> ids;
  size_t start = 0;
  while (start <= line.size()) {
    const size_t end = std::min(line.find(',', start), line.size());
    const std::string item = line.substr(start, end - start);
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LOOM_CHECK_T(ConfigError, used > 0 && item.find_first_not_of(" \t", used) == std::string::npos,
                 "loom generate: ", where, ": expected comma-separated token ids, got \"", line,
                 "\"");
    ids.push_back(id);
    start = end + 1;
  }
  return ids;
}

// The prompts of whichever prompt flag was given, as token ids.
std::vector<std::vector<int64_t>> read_prompts(const Verb& a,
                                               const std::optional<data::Tokenizer>& tok) {
  auto encode = [&](const std::string& text) {
    std::vector<int64_t> ids;
    for (int32_t id : tok->encode(text)) ids.push_back(id);
    return ids;
  };
  if (a.has("prompt")) return {encode(a.get("prompt", ""))};
  if (a.has("prompt-ids")) return {a.get_int_list("prompt-ids", 0, kMaxInt32)};
  std::vector<std::vector<int64_t>> prompts;
  if (a.has("prompts-file")) {
    for (const std::string& line : prompt_lines("prompts-file", a.get("prompts-file", "")))
      prompts.push_back(encode(line));
    return prompts;
  }
  const std::string path = a.get("prompt-ids-file", "");
  const std::vector<std::string> lines = prompt_lines("prompt-ids-file", path);
  for (size_t i = 0; i < lines.size(); ++i)
    prompts.push_back(
        parse_id_line(lines[i], "--prompt-ids-file " + path + " prompt " + std::to_string(i + 1)));
  return prompts;
}

void check_prompt(const std::vector<int64_t>& prompt, size_t index, int64_t block_size,
                  int64_t vocab_size) {
  const std::string which = " (prompt " + std::to_string(index + 1) + ")";
  LOOM_CHECK_T(ConfigError, !prompt.empty(), "loom generate: expected a non-empty prompt", which);
  LOOM_CHECK_T(ConfigError, int64_t(prompt.size()) <= block_size, "loom generate: expected a ",
               "prompt of at most ", block_size, " tokens (the model's block_size), got ",
               prompt.size(), which);
  for (int64_t id : prompt)
    LOOM_CHECK_T(ConfigError, id >= 0 && id < vocab_size, "loom generate: expected prompt ",
                 "ids in [0, ", vocab_size, "), got ", id, which);
}

void print_samples(const Verb& a, const std::optional<data::Tokenizer>& tok,
                   const std::vector<std::vector<int64_t>>& prompts,
                   const std::vector<std::vector<std::vector<int64_t>>>& out) {
  for (size_t p = 0; p < out.size(); ++p) {
    for (size_t s = 0; s < out[p].size(); ++s) {
      if (a.flag("print-ids")) {
        std::printf("%s\n", join_ids(out[p][s]).c_str());
        continue;
      }
      std::vector<int32_t> all(prompts[p].begin(), prompts[p].end());
      all.insert(all.end(), out[p][s].begin(), out[p][s].end());
      if (prompts.size() > 1)
        std::printf("--- prompt %zu sample %zu ---\n", p + 1, s + 1);
      else if (out[p].size() > 1)
        std::printf("--- sample %zu ---\n", s + 1);
      std::printf("%s\n", tok->decode(all).c_str());
    }
  }
}

int run_generate(const Verb& a) {
  int given = 0;
  for (const char* f : kPromptFlags) given += a.has(f) ? 1 : 0;
  LOOM_CHECK_T(ConfigError, given == 1,
               "loom generate: expected exactly one of --prompt, --prompt-ids, --prompts-file and "
               "--prompt-ids-file; see `loom generate --help`");
  models::SamplingOptions opts = sampling_options(a);
  const int64_t num_samples = a.get_int("num-samples", 1, 1, 1 << 20);
  // Weights only; a LoRA run as base + adapters; the step directory or "hf:DIR" it came from.
  const LoadedModel m =
      load_model(a.require("checkpoint"), a.get("device", ""), "loom generate: --checkpoint");
  std::optional<data::Tokenizer> tok;
  if (a.has("prompt") || a.has("prompts-file") || !a.flag("print-ids"))
    tok.emplace(load_tokenizer(a, m));
  const std::vector<std::vector<int64_t>> prompts = read_prompts(a, tok);
  const models::GPTConfig& gc = m.model->config();
  // Never draw a padding row, nor a model row the tokenizer has no token for.
  opts.vocab_size = gc.logits_size();
  if (tok) opts.vocab_size = std::min<int64_t>(opts.vocab_size, tok->vocab_size());
  for (size_t i = 0; i < prompts.size(); ++i)
    check_prompt(prompts[i], i, gc.block_size, opts.vocab_size);
  if (a.has("eos-id")) opts.eos_id = a.get_int("eos-id", 0, 0, kMaxInt32);
  if (!a.has("eos-id") && !a.flag("ignore-eos") && tok && tok->eot_id())
    opts.eos_id = *tok->eot_id();
  models::GPT& model = *m.model;

  // Sample j of prompt i draws as entry i * num_samples + j of one flat list of every sample.
  std::vector<models::GenerationRequest> requests;
  const uint64_t n = uint64_t(num_samples), total = n * prompts.size();
  for (size_t i = 0; i < prompts.size(); ++i)
    requests.push_back({prompts[i], num_samples, opts.seed, total, i * n});
  print_samples(a, tok, prompts, models::generate_batch(model, requests, opts));
  return 0;
}

}  // namespace

void add_generate(Cli& cli) {
  cli.verb(cli.root(), "generate", "continue a prompt with a checkpoint's model", run_generate)
      .value("checkpoint", "DIR", "a checkpoint root (its newest checkpoint is used), a step dir, "
             "or hf:DIR (a Hugging Face model directory)")
      .value("prompt", "TEXT", "prompt text, encoded with the tokenizer")
      .value("prompt-ids", "ID,ID,...", "prompt token ids, comma-separated (instead of --prompt)")
      .value("prompts-file", "FILE", "one prompt per line, all generated as one batch")
      .value("prompt-ids-file", "FILE", "one prompt per line as comma-separated token ids")
      .value("max-new-tokens", "N", "tokens to generate per sample (default 64)")
      .value("temperature", "X", "sampling temperature, 0 = greedy (default 1)")
      .value("top-k", "K", "sample from the K most probable tokens, 0 = all (default 0)")
      .value("top-p", "P", "nucleus sampling: smallest set with mass >= P, in (0,1] (default 1)")
      .value("seed", "N", "sampling seed (default 0)")
      .value("num-samples", "N", "samples of each prompt, drawn as one batch (default 1)")
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

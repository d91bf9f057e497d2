// Hugging Face GPT-2 <-> Loom conversion (see HfConvert.h): config.json validation, the name map
// with Conv1D transposes, vocabulary padding, checkpoint writing and the reverse export (reading
// HF tensors, whole or in pieces, is HfReader.cpp). Every tensor move is a plain copy (transpose +
// contiguous), so the round trip is bit-exact for f32.
#include "io/HfConvert.h"
#include "io/LoraMerge.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/util/Check.h"
#include "data/Tokenizer.h"
#include "config/ConfigDefaults.h"
#include "config/ConfigValidate.h"
#include "config/ConfigLoader.h"
#include "io/Checkpoint.h"
#include "io/HfReader.h"
#include "io/Safetensors.h"
#include "models/HfLlama.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loom::io {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw CheckpointError("hf convert: " + msg); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) fail("cannot write " + tmp);
  }
  fs::rename(tmp, path);
}

// ---- config.json ------------------------------------------------------------------------------

// A positive integer field, at most the bound of the Loom field it becomes (`loom_field`).
int64_t get_int(const json& j, const std::string& path, const char* key, const char* loom_field,
                const char* alt = nullptr) {
  const char* k = j.contains(key) ? key : (alt && j.contains(alt) ? alt : nullptr);
  if (!k) fail(path + ": missing field \"" + key + "\"");
  const int64_t hi = config::size_bound(loom_field);
  if (!j[k].is_number_integer() || j[k].get<int64_t>() <= 0 || j[k].get<int64_t>() > hi)
    fail(path + ": field \"" + k + "\": expected a positive integer <= " + std::to_string(hi) +
         " (the bound of " + loom_field + "), got " + j[k].dump());
  return j[k].get<int64_t>();
}

// Fields that change the math and that Loom's GPT does not implement are errors, not warnings.
void check_supported(const json& j, const std::string& path, int64_t n_embd) {
  auto field = [&](const char* key) { return "field \"" + std::string(key) + "\": expected "; };
  if (j.contains("model_type") && j["model_type"] != "gpt2")
    fail(path + ": " + field("model_type") + "\"gpt2\", got " + j["model_type"].dump());
  std::string act = j.value("activation_function", std::string("gelu_new"));
  if (act != "gelu_new")
    fail(path + ": " + field("activation_function") + "\"gelu_new\" (Loom's tanh GELU), got \"" +
         act + "\"");
  double eps = j.contains("layer_norm_epsilon") && j["layer_norm_epsilon"].is_number()
                   ? j["layer_norm_epsilon"].get<double>()
                   : (j.contains("layer_norm_epsilon") ? -1.0 : 1e-5);
  if (std::fabs(eps - 1e-5) > 1e-12)
    fail(path + ": " + field("layer_norm_epsilon") + "1e-05 (Loom's LayerNorm), got " +
         j["layer_norm_epsilon"].dump());
  if (j.contains("n_inner") && !j["n_inner"].is_null() &&
      !(j["n_inner"].is_number_integer() && j["n_inner"].get<int64_t>() == 4 * n_embd))
    fail(path + ": " + field("n_inner") + "null or 4*n_embd = " + std::to_string(4 * n_embd) +
         ", got " + j["n_inner"].dump());
  for (const char* key : {"scale_attn_by_inverse_layer_idx", "add_cross_attention"})
    if (j.value(key, false)) fail(path + ": " + field(key) + "false, got true");
  if (!j.value("scale_attn_weights", true))
    fail(path + ": " + field("scale_attn_weights") + "true, got false");
}

models::GPTConfig parse_hf_config(const json& j, const std::string& path, int64_t* vocab_size) {
  if (!j.is_object()) fail(path + ": expected a JSON object");
  models::GPTConfig c;
  c.n_layer = get_int(j, path, "n_layer", "model.n_layer");
  c.n_head = get_int(j, path, "n_head", "model.n_head");
  c.n_embd = get_int(j, path, "n_embd", "model.n_embd");
  *vocab_size = get_int(j, path, "vocab_size", "model.vocab_size");
  c.vocab_size = *vocab_size;
  c.block_size = get_int(j, path, "n_positions", "model.block_size", "n_ctx");
  c.tie_embeddings = j.value("tie_word_embeddings", true);
  c.bias = true;
  c.dropout = 0.0;
  check_supported(j, path, c.n_embd);
  if (c.n_embd % c.n_head != 0)
    fail(path + ": expected n_embd divisible by n_head, got n_embd " + std::to_string(c.n_embd) +
         ", n_head " + std::to_string(c.n_head));
  return c;
}

// ---- the name map -----------------------------------------------------------------------------

struct NameMap {
  std::string loom;
  std::string hf;   // without the "transformer." prefix
  bool conv1d;      // HF stores (in, out): transpose
  bool vocab_rows;  // dim 0 is the vocabulary (padded in Loom)
};

std::vector<NameMap> name_map(const models::GPTConfig& c) {
  std::vector<NameMap> m = {{"wte.weight", "wte.weight", false, true},
                            {"wpe.weight", "wpe.weight", false, false}};
  const std::pair<const char*, const char*> layers[] = {
      {"ln_1", "ln_1"}, {"attn.qkv", "attn.c_attn"}, {"attn.proj", "attn.c_proj"},
      {"ln_2", "ln_2"}, {"mlp.fc", "mlp.c_fc"},      {"mlp.proj", "mlp.c_proj"}};
  for (int64_t i = 0; i < c.n_layer; ++i) {
    std::string b = "blocks." + std::to_string(i) + ".", h = "h." + std::to_string(i) + ".";
    for (const auto& [loom, hf] : layers) {
      bool linear = std::string(loom).find('.') != std::string::npos;
      m.push_back({b + loom + ".weight", h + hf + ".weight", linear, false});
      m.push_back({b + loom + ".bias", h + hf + ".bias", false, false});
    }
  }
  m.push_back({"ln_f.weight", "ln_f.weight", false, false});
  m.push_back({"ln_f.bias", "ln_f.bias", false, false});
  return m;
}

// The Loom shape of each parameter (unpadded vocabulary).
Shape loom_shape(const std::string& name, const models::GPTConfig& c, int64_t vocab) {
  const int64_t C = c.n_embd;
  auto ends = [&](const char* s) {
    std::string suf(s);
    return name.size() >= suf.size() &&
           name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (name == "wte.weight" || name == "lm_head.weight") return {vocab, C};
  if (name == "wpe.weight") return {c.block_size, C};
  if (ends("attn.qkv.weight")) return {3 * C, C};
  if (ends("attn.qkv.bias")) return {3 * C};
  if (ends("mlp.fc.weight")) return {4 * C, C};
  if (ends("mlp.fc.bias")) return {4 * C};
  if (ends("mlp.proj.weight")) return {C, 4 * C};
  if (ends("attn.proj.weight")) return {C, C};
  return {C};  // LayerNorm weights and biases, proj biases
}

bool is_buffer(const std::string& hf) {
  auto ends = [&](const std::string& s) {
    return hf.size() >= s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".attn.bias") || ends(".attn.masked_bias") || ends(".rotary_emb.inv_freq");
}

Tensor pad_rows(const Tensor& t, int64_t rows) {
  if (t.size(0) == rows) return t;
  Tensor p = Tensor::zeros({rows, t.size(1)}, t.dtype());
  p.narrow(0, 0, t.size(0)).copy_(t);
  return p;
}

HfTokenizerFiles find_tokenizer(const fs::path& dir) {
  auto maybe = [&](const char* name) {
    fs::path p = dir / name;
    return fs::exists(p) ? fs::absolute(p).string() : std::string();
  };
  HfTokenizerFiles t{maybe("vocab.json"), maybe("merges.txt"), maybe("tokenizer.json"),
                     maybe("tokenizer_config.json"), maybe("special_tokens_map.json")};
  if (t.vocab_json.empty() != t.merges_txt.empty())
    fail(dir.string() + ": expected vocab.json and merges.txt together, found only " +
         (t.vocab_json.empty() ? "merges.txt" : "vocab.json"));
  return t;
}

}  // namespace

// ---- import -------------------------------------------------------------------------------------

namespace detail {

HfConfig read_hf_config(const std::string& hf_dir) {
  const std::string cfg_path = (fs::path(hf_dir) / "config.json").string();
  if (!fs::exists(cfg_path)) fail(hf_dir + ": no config.json (is this a Hugging Face model dir?)");
  HfConfig c;
  c.json = read_file(cfg_path);
  json j;
  try {
    j = json::parse(c.json);
  } catch (const json::exception& e) {
    fail(cfg_path + ": not valid JSON: " + e.what());
  }
  if (j.is_object() && j.contains("architectures")) {
    const json& a = j["architectures"];
    const std::vector<std::string> ok = supported_architectures();
    std::string list;
    for (const std::string& name : ok) list += (list.empty() ? "" : ", ") + name;
    if (!a.is_array() || a.size() != 1 || !a[0].is_string() ||
        std::find(ok.begin(), ok.end(), a[0].get<std::string>()) == ok.end())
      fail(cfg_path + ": unsupported architecture " + a.dump() + "; supported: " + list);
    if (a[0] != "GPT2LMHeadModel") {
      try {
        c.config = models::hf_llama_config(c.json, cfg_path);
      } catch (const ValueError& e) {
        fail(e.what());
      }
      c.vocab_size = c.config.vocab_size;
      return c;
    }
  }
  c.config = parse_hf_config(j, cfg_path, &c.vocab_size);
  return c;
}

std::vector<HfParam> hf_params(const models::GPTConfig& c, int64_t vocab) {
  if (is_llama_family(c)) return hf_llama_params(c, vocab);
  std::vector<HfParam> out;
  for (const NameMap& n : name_map(c))
    out.push_back({n.loom, n.hf, loom_shape(n.loom, c, vocab), n.conv1d, n.vocab_rows, {}});
  if (!c.tie_embeddings)
    out.push_back({"lm_head.weight", "lm_head.weight", {vocab, c.n_embd}, false, true, {}});
  return out;
}

std::string hf_table_name(const std::string& hf_name) {
  std::string n = hf_name.rfind("transformer.", 0) == 0 ? hf_name.substr(12) : hf_name;
  return is_buffer(n) ? "" : n;
}

HfTokenizerFiles find_hf_tokenizer(const std::string& hf_dir) { return find_tokenizer(hf_dir); }

}  // namespace detail

HfModel hf_to_loom(const std::string& hf_dir, const HfImportOptions& opts) {
  LOOM_CHECK(opts.vocab_pad_multiple >= 1, "hf_to_loom: expected vocab_pad_multiple >= 1, got ",
             opts.vocab_pad_multiple);
  HfReader r(hf_dir);
  HfModel m;
  m.hf_config_json = r.hf_config_json();
  m.config = r.config();
  m.vocab_size = r.vocab_size();
  const int64_t pad = opts.vocab_pad_multiple;
  m.config.vocab_size = (m.vocab_size + pad - 1) / pad * pad;
  for (const detail::HfParam& p : r.params()) {
    Tensor t = r.read(p.loom, ShardSpec::whole(p.shape));
    m.params[p.loom] = p.vocab_rows ? pad_rows(t, m.config.vocab_size) : t;
  }
  m.tokenizer = r.tokenizer();
  return m;
}

config::ModelConfig hf_model_config(const HfModel& m, const HfImportOptions& opts) {
  config::ModelConfig mc;
  if (detail::is_llama_family(m.config)) {
    models::GPTConfig c = m.config;
    c.vocab_size = m.vocab_size;
    mc = c.to_model_config();
    mc.set_vocab_pad_multiple(opts.vocab_pad_multiple);
    return mc;
  }
  mc.set_preset("custom");
  mc.set_n_layer(m.config.n_layer);
  mc.set_n_head(m.config.n_head);
  mc.set_n_embd(m.config.n_embd);
  mc.set_vocab_size(m.vocab_size);
  mc.set_vocab_pad_multiple(opts.vocab_pad_multiple);
  mc.set_block_size(m.config.block_size);
  mc.set_dropout(m.config.dropout);
  mc.set_bias(true);
  mc.set_tie_embeddings(m.config.tie_embeddings);
  mc.set_init_std(m.config.init_std);
  return mc;
}

// ---- export -------------------------------------------------------------------------------------

std::map<std::string, Tensor> loom_to_hf_tensors(const std::map<std::string, Tensor>& params,
                                                 const models::GPTConfig& config,
                                                 int64_t vocab_size) {
  LOOM_CHECK(vocab_size >= 1 && vocab_size <= config.vocab_size,
             "loom_to_hf_tensors: expected vocab_size in [1, ", config.vocab_size, "], got ",
             vocab_size);
  if (detail::is_llama_family(config)) {
    models::GPTConfig c = config;
    c.real_vocab_size = vocab_size;
    std::map<std::string, Tensor> out;
    for (auto& [name, t] : models::loom_to_hf_llama(params, c))
      out[name] = t.to(Device::cpu()).to(DType::F32).contiguous().clone();
    return out;
  }
  std::map<std::string, Tensor> out;
  auto get = [&](const std::string& name, Shape want) {
    auto it = params.find(name);
    if (it == params.end()) fail("Loom model has no parameter '" + name + "'");
    if (name == "wte.weight" || name == "lm_head.weight") want[0] = config.vocab_size;
    if (it->second.shape() != want)
      fail("parameter '" + name + "': expected shape " + shape_str(want) + ", got " +
           shape_str(it->second.shape()));
    return it->second.detach().to(Device::cpu());
  };
  for (const NameMap& n : name_map(config)) {
    Tensor t = get(n.loom, loom_shape(n.loom, config, vocab_size));
    if (n.vocab_rows) t = t.narrow(0, 0, vocab_size);
    if (n.conv1d) t = t.t();
    out["transformer." + n.hf] = t.to(DType::F32).contiguous().clone();
  }
  if (!config.tie_embeddings) {
    Tensor h = get("lm_head.weight", {vocab_size, config.n_embd}).narrow(0, 0, vocab_size);
    out["lm_head.weight"] = h.to(DType::F32).contiguous().clone();
  }
  return out;
}

namespace {

// The tokenizer's end-of-text id, else the last vocabulary row.
int64_t eos_of(const HfTokenizerFiles& tok, int64_t vocab_size) {
  if (tok.empty()) return vocab_size - 1;
  auto t = tok.tokenizer_json.empty() ? data::Tokenizer::from_files(tok.vocab_json, tok.merges_txt)
                                      : data::Tokenizer::from_tokenizer_json(tok.tokenizer_json);
  return t.eot_id() ? int64_t(*t.eot_id()) : vocab_size - 1;
}

json hf_config_for(const models::GPTConfig& c, int64_t vocab_size, const std::string& base,
                   const HfTokenizerFiles& tok) {
  json j = json::object();
  if (detail::is_llama_family(c)) {
    // An imported config.json has its own token ids; only a fresh one asks the tokenizer.
    const int64_t eos = base.empty() ? eos_of(tok, vocab_size) : vocab_size - 1;
    try {
      return json::parse(detail::llama_config_json(c, vocab_size, base, eos));
    } catch (const json::exception& e) {
      fail(std::string("stored HF config.json is not valid JSON: ") + e.what());
    }
  }
  if (!base.empty()) {
    try {
      j = json::parse(base);
    } catch (const json::exception& e) {
      fail(std::string("stored HF config.json is not valid JSON: ") + e.what());
    }
  } else {
    const int64_t eot = eos_of(tok, vocab_size);
    j = {{"initializer_range", c.init_std},
         {"bos_token_id", eot},
         {"eos_token_id", eot},
         {"attn_pdrop", c.dropout},
         {"embd_pdrop", c.dropout},
         {"resid_pdrop", c.dropout},
         {"use_cache", true}};
  }
  j["model_type"] = "gpt2";
  j["architectures"] = {"GPT2LMHeadModel"};
  j["activation_function"] = "gelu_new";
  j["layer_norm_epsilon"] = 1e-5;
  j["n_layer"] = c.n_layer;
  j["n_head"] = c.n_head;
  j["n_embd"] = c.n_embd;
  j["n_inner"] = nullptr;
  j["vocab_size"] = vocab_size;
  j["n_positions"] = c.block_size;
  if (j.contains("n_ctx")) j["n_ctx"] = c.block_size;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j[j.contains("torch_dtype") ? "torch_dtype" : "dtype"] = "float32";
  return j;
}

void copy_tokenizer(const HfTokenizerFiles& tok, const fs::path& out_dir,
                    HfTokenizerFiles* copied) {
  auto copy = [&](const std::string& src, const char* name, std::string* dst) {
    if (src.empty()) return;
    if (!fs::exists(src)) fail("tokenizer file " + src + " does not exist");
    fs::path to = out_dir / name;
    std::error_code ec;
    if (fs::exists(to) && fs::equivalent(src, to, ec)) return;
    fs::copy_file(src, to, fs::copy_options::overwrite_existing, ec);
    if (ec) fail("cannot copy " + src + " to " + to.string() + ": " + ec.message());
    if (dst) *dst = fs::absolute(to).string();
  };
  HfTokenizerFiles dummy;
  HfTokenizerFiles* d = copied ? copied : &dummy;
  copy(tok.vocab_json, "vocab.json", &d->vocab_json);
  copy(tok.merges_txt, "merges.txt", &d->merges_txt);
  copy(tok.tokenizer_json, "tokenizer.json", &d->tokenizer_json);
  copy(tok.tokenizer_config_json, "tokenizer_config.json", &d->tokenizer_config_json);
  copy(tok.special_tokens_map_json, "special_tokens_map.json", &d->special_tokens_map_json);
}

}  // namespace

void save_hf_model(const std::string& out_dir, const std::map<std::string, Tensor>& params,
                   const models::GPTConfig& config, int64_t vocab_size,
                   const HfTokenizerFiles& tokenizer, const std::string& hf_config_json,
                   const HfExportOptions& opts) {
  std::map<std::string, Tensor> hf = loom_to_hf_tensors(params, config, vocab_size);
  json cfg = hf_config_for(config, vocab_size, hf_config_json, tokenizer);
  fs::create_directories(out_dir);
  save_safetensors_dir(out_dir, hf, opts.max_shard_bytes, {{"format", "pt"}});
  write_file((fs::path(out_dir) / "config.json").string(), cfg.dump(2) + "\n");
  write_file((fs::path(out_dir) / "generation_config.json").string(),
             detail::generation_config_json(cfg.dump()));
  copy_tokenizer(tokenizer, out_dir, nullptr);
}

// ---- checkpoints --------------------------------------------------------------------------------

std::string convert_hf_to_loom_checkpoint(const std::string& hf_dir, const std::string& ckpt_root,
                                          const HfImportOptions& opts) {
  HfModel m = hf_to_loom(hf_dir, opts);
  fs::path tok_dir = fs::path(ckpt_root) / "tokenizer";
  HfTokenizerFiles copied;
  if (!m.tokenizer.empty()) {
    fs::create_directories(tok_dir);
    copy_tokenizer(m.tokenizer, tok_dir, &copied);
  }
  config::RunConfig run;
  *run.mutable_model() = hf_model_config(m, opts);
  if (!copied.tokenizer_json.empty()) {
    run.mutable_data()->set_tokenizer_json(copied.tokenizer_json);
  } else if (!copied.vocab_json.empty()) {
    run.mutable_data()->set_tokenizer_vocab(copied.vocab_json);
    run.mutable_data()->set_tokenizer_merges(copied.merges_txt);
  }
  Checkpoint ck;
  ck.step = 0;
  ck.tokenizer = {m.tokenizer.vocab_json, m.tokenizer.merges_txt, m.tokenizer.tokenizer_json,
                  m.tokenizer.tokenizer_config_json};
  for (const auto& [name, t] : m.params) ck.tensors["model/" + name] = t;
  ck.meta["config"] = config::to_text(run);
  ck.meta["hf_config"] = m.hf_config_json;
  ck.meta["hf_source"] = fs::absolute(hf_dir).string();
  return save_checkpoint(ckpt_root, ck);
}

HfTokenizerFiles checkpoint_tokenizer_files(const std::string& step_dir) {
  TokenizerFiles own = checkpoint_tokenizer(step_dir);  // version 3 checkpoints carry their own
  if (!own.empty())
    return {own.vocab_json, own.merges_txt, own.tokenizer_json, own.tokenizer_config_json, ""};
  fs::path tok_dir = fs::absolute(step_dir).parent_path() / "tokenizer";
  if (fs::is_directory(tok_dir)) return find_tokenizer(tok_dir);
  HfTokenizerFiles t;
  CheckpointMeta meta = read_checkpoint_meta(step_dir);
  auto it = meta.entries.find("config");
  if (it == meta.entries.end()) return t;
  config::RunConfig run = config::parse_text(it->second, step_dir + "/meta.json:config");
  auto existing = [](const std::string& p) { return !p.empty() && fs::exists(p) ? p : ""; };
  t.tokenizer_json = existing(run.data().tokenizer_json());
  t.vocab_json = existing(run.data().tokenizer_vocab());
  t.merges_txt = existing(run.data().tokenizer_merges());
  if (t.vocab_json.empty() || t.merges_txt.empty()) t.vocab_json = t.merges_txt = "";
  return t;
}

namespace {

// GPTConfig of a checkpoint: n_head and the unpadded vocabulary from meta "config", every other
// size from the tensors themselves (and checked against the config where it gives one).
models::GPTConfig checkpoint_gpt_config(const Checkpoint& ck, const std::string& dir,
                                        int64_t* vocab_size) {
  auto it = ck.meta.find("config");
  if (it == ck.meta.end()) fail(dir + ": checkpoint has no meta \"config\" (model shape unknown)");
  config::RunConfig run = config::parse_text(it->second, dir + "/meta.json:config");
  auto tensor = [&](const std::string& name) -> const Tensor& {
    auto t = ck.tensors.find("model/" + name);
    if (t == ck.tensors.end()) fail(dir + ": checkpoint has no tensor 'model/" + name + "'");
    return t->second;
  };
  const config::ModelConfig& mc = run.model();
  models::GPTConfig c;
  if (mc.position() == config::ModelConfig::ROPE) {  // no position table: the config says all
    config::ModelConfig filled = mc;
    config::model_defaults(filled);
    c = models::GPTConfig::from_model_config(filled);
  }
  c.n_embd = tensor("wte.weight").size(1);
  c.vocab_size = tensor("wte.weight").size(0);
  if (c.position == models::PositionKind::Learned) c.block_size = tensor("wpe.weight").size(0);
  c.n_layer = 0;
  while (ck.tensors.count("model/blocks." + std::to_string(c.n_layer) + ".ln_1.weight"))
    ++c.n_layer;
  c.tie_embeddings = !ck.tensors.count("model/lm_head.weight");
  if (!mc.has_n_head()) fail(dir + ": meta \"config\" has no model.n_head");
  c.n_head = mc.n_head();
  *vocab_size = mc.has_vocab_size() ? mc.vocab_size() : c.vocab_size;
  auto agree = [&](const char* field, bool has, int64_t cfg, int64_t actual) {
    if (has && cfg != actual)
      fail(dir + ": meta \"config\" model." + field + " = " + std::to_string(cfg) +
           " but the tensors say " + std::to_string(actual));
  };
  agree("n_layer", mc.has_n_layer(), mc.n_layer(), c.n_layer);
  agree("n_embd", mc.has_n_embd(), mc.n_embd(), c.n_embd);
  agree("block_size", mc.has_block_size(), mc.block_size(), c.block_size);
  if (*vocab_size > c.vocab_size)
    fail(dir + ": model.vocab_size " + std::to_string(*vocab_size) + " exceeds wte rows " +
         std::to_string(c.vocab_size));
  return c;
}

}  // namespace

void convert_loom_to_hf(const std::string& ckpt_dir, const std::string& out_dir,
                        const HfExportOptions& opts) {
  const std::string dir = checkpoint_step_dir(ckpt_dir);
  if (dir.empty()) fail(ckpt_dir + ": no complete Loom checkpoint here");
  Checkpoint ck = load_checkpoint(dir, LoadOptions::weights_only());
  merge_lora_checkpoint(ck, dir);  // a LoRA run's adapters merged into its base: a plain model
  int64_t vocab = 0;
  models::GPTConfig c = checkpoint_gpt_config(ck, dir, &vocab);
  std::map<std::string, Tensor> params;
  for (const auto& [name, t] : ck.tensors)
    if (name.rfind("model/", 0) == 0) params[name.substr(6)] = t;
  auto hf_cfg = ck.meta.find("hf_config");
  save_hf_model(out_dir, params, c, vocab, checkpoint_tokenizer_files(dir),
                hf_cfg == ck.meta.end() ? "" : hf_cfg->second, opts);
}

}  // namespace loom::io

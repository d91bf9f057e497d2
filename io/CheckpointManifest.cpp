// MANIFEST.json and meta.json parsing with complete validation (see CheckpointManifest.h). The JSON
// is walked by hand with type checks, so a wrong type is our CheckpointError naming the file and
// the key, never nlohmann's type_error.
#include "io/CheckpointManifest.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "core/util/Check.h"

using nlohmann::json;

namespace loom::io {

namespace {

constexpr int64_t kMaxWorldSize = 1 << 20;

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw CheckpointError("checkpoint: " + path + ": " + msg);
}

json parse_object(std::string_view text, const std::string& path) {
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail(path, std::string("is not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) fail(path, std::string("expected a JSON object, got ") + j.type_name());
  return j;
}

// An integer field in [lo, hi]; `fallback` when absent and has_fallback.
int64_t get_int(const json& j, const char* key, int64_t lo, int64_t hi, const std::string& path,
                bool required, int64_t fallback = 0) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) fail(path, std::string("expected an integer \"") + key + "\", got none");
    return fallback;
  }
  int64_t v = 0;
  if (it->is_number_unsigned() && it->get<uint64_t>() <= uint64_t(INT64_MAX))
    v = int64_t(it->get<uint64_t>());
  else if (it->is_number_integer() && !it->is_number_unsigned())
    v = it->get<int64_t>();
  else
    fail(path, std::string("expected \"") + key + "\" an integer, got " + it->dump());
  if (v < lo || v > hi)
    fail(path, std::string("expected \"") + key + "\" in [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "], got " + std::to_string(v));
  return v;
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string rank_file(const char* stem, int64_t rank) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%s-r%05lld.h5", stem, static_cast<long long>(rank));
  return buf;
}

std::map<std::string, ManifestFile> parse_files(const json& m, const std::string& path) {
  auto it = m.find("files");
  if (it == m.end() || !it->is_object()) fail(path, "expected a \"files\" object");
  std::map<std::string, ManifestFile> files;
  for (const auto& [name, info] : it->items()) {
    if (!is_plain_file_name(name) || name == "MANIFEST.json")
      fail(path, "\"files\" lists \"" + name + "\"; expected plain file names in the directory");
    if (!info.is_object()) fail(path, "files[\"" + name + "\"]: expected {bytes, sha256}");
    ManifestFile f;
    auto b = info.find("bytes");
    if (b == info.end() || !b->is_number_unsigned())
      fail(path, "files[\"" + name + "\"]: expected \"bytes\" an integer >= 0");
    f.bytes = b->get<uint64_t>();
    auto h = info.find("sha256");
    if (h == info.end() || !h->is_string() || !is_hex64(h->get<std::string>()))
      fail(path, "files[\"" + name + "\"]: expected \"sha256\" of 64 lowercase hex digits");
    f.sha256 = h->get<std::string>();
    files[name] = f;
  }
  return files;
}

// Versions 1 and 2: tensors.h5, or one tensors-rNNNNN.h5 per rank of world_size.
void legacy_groups(Manifest& m, const std::string& path) {
  std::vector<std::string>& g = m.tensor_groups[""];
  if (m.world_size > 0) {
    for (int64_t r = 0; r < m.world_size; ++r) g.push_back(rank_file("tensors", r));
  } else {
    g.push_back("tensors.h5");
  }
  for (const std::string& f : g)
    if (!m.files.count(f)) fail(path, "does not list " + f);
}

void parse_groups(const json& j, Manifest& m, const std::string& path) {
  auto it = j.find("tensor_groups");
  if (it == j.end() || !it->is_object()) fail(path, "expected a \"tensor_groups\" object");
  std::set<std::string> seen;
  for (const auto& [prefix, files] : it->items()) {
    if (!prefix.empty() && prefix.back() != '/')
      fail(path, "tensor group \"" + prefix + "\": expected \"\" or a prefix ending in '/'");
    if (!files.is_array() || files.empty())
      fail(path, "tensor group \"" + prefix + "\": expected a non-empty array of file names");
    std::vector<std::string>& g = m.tensor_groups[prefix];
    for (const json& f : files) {
      if (!f.is_string() || !m.files.count(f.get<std::string>()))
        fail(path, "tensor group \"" + prefix + "\" names " + f.dump() +
                       ", which \"files\" does not list");
      if (!seen.insert(f.get<std::string>()).second)
        fail(path, "tensor file " + f.dump() + " is in more than one group");
      g.push_back(f.get<std::string>());
    }
  }
}

void parse_tokenizer(const json& j, Manifest& m, const std::string& path) {
  auto it = j.find("tokenizer_files");
  if (it == j.end()) return;
  if (!it->is_array()) fail(path, "expected \"tokenizer_files\" an array of file names");
  for (const json& f : *it) {
    bool known = false;
    for (const char* n : kTokenizerFileNames) known = known || (f.is_string() && f == n);
    if (!known || !m.files.count(f.get<std::string>()))
      fail(path, "tokenizer_files names " + f.dump() +
                     "; expected vocab.json, merges.txt, tokenizer.json or tokenizer_config.json "
                     "listed in \"files\"");
    m.tokenizer_files.push_back(f.get<std::string>());
  }
}

}  // namespace

bool is_plain_file_name(std::string_view name) {
  return !name.empty() && name.size() <= 255 && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

std::vector<std::string> Manifest::tensor_files_for(
    const std::vector<std::string>& prefixes) const {
  std::vector<std::string> out;
  for (const auto& [group, files] : tensor_groups) {
    bool needed = prefixes.empty();
    for (const std::string& p : prefixes) {
      if (!group.empty()) {
        needed = needed || p.rfind(group, 0) == 0 || group.rfind(p, 0) == 0;
      } else {  // the catch-all group: needed unless another group takes every name under p
        bool taken = false;
        for (const auto& [other, unused] : tensor_groups)
          taken = taken || (!other.empty() && p.rfind(other, 0) == 0);
        needed = needed || !taken;
      }
    }
    if (needed) out.insert(out.end(), files.begin(), files.end());
  }
  return out;
}

std::string Manifest::group_of(const std::string& name) const {
  std::string best;
  for (const auto& [group, unused] : tensor_groups)
    if (!group.empty() && name.rfind(group, 0) == 0 && group.size() > best.size()) best = group;
  return best;
}

Manifest parse_manifest(std::string_view text, const std::string& path) {
  json j = parse_object(text, path);
  auto fmt = j.find("format");
  if (fmt == j.end() || !fmt->is_string() || *fmt != kCheckpointFormat)
    fail(path, std::string("expected format \"") + kCheckpointFormat + "\", got " +
                   (fmt == j.end() ? std::string("none") : fmt->dump()));
  Manifest m;
  auto ver = j.find("version");
  if (ver == j.end() || !ver->is_number_integer() || *ver < 1 || *ver > kCheckpointVersion)
    fail(path, "expected version 1 to " + std::to_string(kCheckpointVersion) + ", got " +
                   (ver == j.end() ? std::string("none") : ver->dump()) +
                   (ver != j.end() && ver->is_number() && *ver > kCheckpointVersion
                        ? " (written by a newer Loom)"
                        : ""));
  m.version = ver->get<int>();
  m.step = get_int(j, "step", 0, INT64_MAX, path, m.version >= 3);
  m.world_size = get_int(j, "world_size", 1, kMaxWorldSize, path, false, 0);
  m.sequence = get_int(j, "sequence", 1, INT64_MAX, path, m.version >= 3, 0);
  m.files = parse_files(j, path);
  if (!m.files.count("meta.json")) fail(path, "does not list meta.json");
  if (m.version >= 3)
    parse_groups(j, m, path);
  else
    legacy_groups(m, path);
  parse_tokenizer(j, m, path);
  return m;
}

std::string manifest_json(const Manifest& m) {
  json j = {{"format", kCheckpointFormat}, {"version", m.version}, {"step", m.step}};
  if (m.world_size > 0) j["world_size"] = m.world_size;
  if (m.sequence > 0) j["sequence"] = m.sequence;
  j["files"] = json::object();
  for (const auto& [name, f] : m.files)
    j["files"][name] = {{"bytes", f.bytes}, {"sha256", f.sha256}};
  if (m.version >= 3) j["tensor_groups"] = m.tensor_groups;
  if (!m.tokenizer_files.empty()) j["tokenizer_files"] = m.tokenizer_files;
  return j.dump(1);
}

CheckpointMeta parse_meta(std::string_view text, const std::string& path) {
  json j = parse_object(text, path);
  CheckpointMeta m;
  auto it = j.find("step");
  if (it == j.end()) fail(path, "expected a \"step\" entry, got none");
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), m.step);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty() || m.step < 0)
      fail(path, "expected \"step\" a decimal integer >= 0, got \"" + s + "\"");
  } else {
    m.step = get_int(j, "step", 0, INT64_MAX, path, true);
  }
  for (const auto& [k, v] : j.items()) {
    if (k == "step") continue;
    m.entries[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  return m;
}

std::string meta_json(const CheckpointMeta& m) {
  json j(m.entries);
  j["step"] = std::to_string(m.step);
  return j.dump(1);
}

}  // namespace loom::io

// Fuzz harness: a checkpoint's MANIFEST.json and meta.json parsers, both run on every input. What
// parses must survive a round trip through manifest_json / meta_json, and a manifest's file
// selection must only name listed files. Only CheckpointError may reject an input.
#include <algorithm>

#include "io/CheckpointManifest.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::accept<CheckpointError>([&] {
    io::CheckpointMeta m = io::parse_meta(text, "fuzz/meta.json");
    io::CheckpointMeta back = io::parse_meta(io::meta_json(m), "fuzz/meta.json");
    if (back.step != m.step || back.entries != m.entries)
      throw InternalError("fuzz: meta.json does not round-trip");
  });
  fuzz::accept<CheckpointError>([&] {
    io::Manifest m = io::parse_manifest(text, "fuzz/MANIFEST.json");
    for (const auto& prefixes : {std::vector<std::string>{}, {"model/"}, {"optim/"}, {""}})
      for (const std::string& f : m.tensor_files_for(prefixes))
        if (!m.files.count(f)) throw InternalError("fuzz: selected an unlisted file " + f);
    (void)m.group_of("model/wte.weight");
    io::Manifest back = io::parse_manifest(io::manifest_json(m), "fuzz/MANIFEST.json");
    if (io::manifest_json(back) != io::manifest_json(m))
      throw InternalError("fuzz: MANIFEST.json does not round-trip");
  });
  return 0;
}

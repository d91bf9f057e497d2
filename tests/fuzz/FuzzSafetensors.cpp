// Fuzz harness: a safetensors file (header JSON and data region). Every tensor of a file that
// opens is materialised and read. Only CheckpointError may reject an input.
#include "io/Safetensors.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::scratch_file("model.safetensors", {reinterpret_cast<const char*>(data), size});
  fuzz::accept<CheckpointError>([&] {
    io::SafetensorsFile f = io::SafetensorsFile::open(path);
    for (const io::SafetensorsEntry& e : f.entries()) {
      fuzz::accept<CheckpointError>([&] {
        Tensor t = f.tensor(e.name).contiguous();
        const auto* p = static_cast<const uint8_t*>(t.raw_data());
        uint64_t sum = 0;
        for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];  // every byte is readable
        if (t.nbytes() != e.end - e.begin) throw InternalError("fuzz: tensor size != offsets");
        (void)sum;
      });
    }
  });
  return 0;
}

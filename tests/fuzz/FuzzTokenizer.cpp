// Fuzz harness: tokenizer files. An input with a NUL byte is vocab.json, NUL, merges.txt; any other
// is a Hugging Face tokenizer.json. A loaded
// tokenizer encodes and decodes a fixed text and the input's tail (ids it produced decode). Only
// DataError and ValueError may reject an input.
#include <algorithm>
#include <optional>

#include "data/Tokenizer.h"
#include "tests/fuzz/FuzzUtil.h"

using namespace loom;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view rest(reinterpret_cast<const char*>(data), size);
  const bool hf_json = rest.find('\0') == std::string_view::npos;
  fuzz::accept<DataError, ValueError>([&] {
    std::optional<data::Tokenizer> tok;
    if (hf_json) {
      tok.emplace(data::Tokenizer::from_tokenizer_json(fuzz::scratch_file("tokenizer.json", rest)));
    } else {
      size_t nul = rest.find('\0');
      std::string_view vocab = rest.substr(0, nul);
      std::string_view merges = nul == std::string_view::npos ? "" : rest.substr(nul + 1);
      tok.emplace(data::Tokenizer::from_files(fuzz::scratch_file("vocab.json", vocab),
                                              fuzz::scratch_file("merges.txt", merges)));
    }
    const std::string text =
        "Hello world<|endoftext|> caf\xc3\xa9 \xff\xfe" +
        std::string(rest.substr(rest.size() - std::min<size_t>(rest.size(), 64)));
    (void)tok->decode(tok->encode(text));
  });
  return 0;
}

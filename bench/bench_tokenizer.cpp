// Tokenizer throughput: BPE encode speed on a text file (GPT-2 vocab.json + merges.txt, or any HF
// tokenizer.json such as tests/golden/tokenizers/llama3/tokenizer.json), printed as one JSON line
// (MB/s and tokens/s for the first pass with an empty word cache, the best of 3 warm passes, and
// the best of 3 passes over ~16 KB chunks cut after a '\n' -- the way a dataset of documents is
// encoded, and the fair comparison for HF, which is slower on one multi-MB string).
// Compare with bench/tokenizer_hf.py (Hugging Face `tokenizers`, one thread) on the same file:
//   python bench/tokenizer_hf.py --dump-golden-text /tmp/text.txt
//   build/bin/bench_tokenizer /tmp/text.txt vocab.json merges.txt
//   build/bin/bench_tokenizer /tmp/text.txt tests/golden/tokenizers/qwen2/tokenizer.json
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "data/Tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s TEXT_FILE (VOCAB_JSON MERGES_TXT | TOKENIZER_JSON)\n",
                 argv[0]);
    return 1;
  }
  std::ifstream f(argv[1], std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 1;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  loom::data::Tokenizer tok = argc == 4 ? loom::data::Tokenizer::from_files(argv[2], argv[3])
                                         : loom::data::Tokenizer::from_tokenizer_json(argv[2]);
  double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto time_encode = [&](size_t& n_tokens) {
    auto s = Clock::now();
    n_tokens = tok.encode(text).size();
    return std::chrono::duration<double>(Clock::now() - s).count();
  };
  size_t n_tokens = 0, n_chunk_tokens = 0;
  double cold = time_encode(n_tokens);
  double warm = 1e30, chunked = 1e30;
  for (int i = 0; i < 3; ++i) warm = std::min(warm, time_encode(n_tokens));
  std::vector<std::string_view> chunks;
  for (size_t start = 0, i = 0; i < text.size(); ++i) {
    if ((text[i] == '\n' && i + 1 - start > 16384) || i + 1 == text.size()) {
      chunks.push_back(std::string_view(text).substr(start, i + 1 - start));
      start = i + 1;
    }
  }
  for (int r = 0; r < 3; ++r) {
    auto s = Clock::now();
    n_chunk_tokens = 0;
    for (std::string_view c : chunks) n_chunk_tokens += tok.encode(c).size();
    chunked = std::min(chunked, std::chrono::duration<double>(Clock::now() - s).count());
  }
  const double mb = double(text.size()) / 1e6;
  std::printf("{\"impl\": \"loom\", \"bytes\": %zu, \"tokens\": %zu, \"load_s\": %.3f, "
              "\"cold_mb_per_s\": %.2f, \"cold_tokens_per_s\": %.0f, \"warm_mb_per_s\": %.2f, "
              "\"warm_tokens_per_s\": %.0f, \"chunks\": %zu, \"chunk_tokens\": %zu, "
              "\"chunked_mb_per_s\": %.2f}\n",
              text.size(), n_tokens, load_s, mb / cold, double(n_tokens) / cold, mb / warm,
              double(n_tokens) / warm, chunks.size(), n_chunk_tokens, mb / chunked);
  return 0;
}

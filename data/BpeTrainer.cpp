// Byte-level BPE training with incremental pair counts and a lazy max-heap (see BpeTrainer.h).
#include "data/BpeTrainer.h"

#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/util/Check.h"
#include "data/ByteLevel.h"
#include "data/PreTokenizer.h"
#include "data/Preprocess.h"

namespace loom::data {
namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
int32_t left_of(uint64_t k) { return int32_t(k >> 32); }
int32_t right_of(uint64_t k) { return int32_t(k & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> syms;
  int64_t count = 0;
};

// Splits each text on the special tokens, pre-tokenizes, and counts distinct pieces.
std::vector<Word> count_words(const std::vector<std::string>& texts,
                              const std::vector<std::string>& specials,
                              const std::array<int32_t, 256>& byte_id) {
  std::unordered_map<std::string, int64_t> counts;
  PreTokenizer pre;
  for (const std::string& text : texts) {
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t cut = std::string::npos, len = 0;
      for (const std::string& s : specials) {
        size_t f = s.empty() ? std::string::npos : text.find(s, pos);
        if (f < cut || (f == cut && s.size() > len)) { cut = f; len = s.size(); }
      }
      std::string_view seg = std::string_view(text).substr(pos, cut == std::string::npos
                                                                    ? std::string::npos
                                                                    : cut - pos);
      pre.split(seg, [&](std::string_view piece) { ++counts[std::string(piece)]; });
      if (cut == std::string::npos) break;
      pos = cut + len;
    }
  }
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());  // word order must not depend on hashing
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [w, c] : sorted) {
    Word word;
    word.count = c;
    for (char ch : w) word.syms.push_back(byte_id[uint8_t(ch)]);
    words.push_back(std::move(word));
  }
  return words;
}

class Trainer {
 public:
  Trainer(std::vector<Word> words, std::vector<std::string>& tok_bytes)
      : words_(std::move(words)), tok_(tok_bytes), heap_(Order{&tok_bytes}) {
    for (int32_t w = 0; w < int32_t(words_.size()); ++w) {
      const auto& s = words_[size_t(w)].syms;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        uint64_t k = pair_key(s[i], s[i + 1]);
        counts_[k] += words_[size_t(w)].count;
        add_where(k, w);
      }
    }
    for (const auto& [k, c] : counts_) heap_.push(Entry{c, k});
    visited_.assign(words_.size(), -1);
  }

  // Pops the best pair with an up-to-date count; false if none is left.
  bool best(uint64_t& key, int64_t& count) {
    while (!heap_.empty()) {
      Entry e = heap_.top();
      heap_.pop();
      auto it = counts_.find(e.key);
      if (it != counts_.end() && it->second == e.count && e.count > 0) {
        key = e.key;
        count = e.count;
        return true;
      }
    }
    return false;
  }

  void merge(uint64_t key, int32_t new_id, int32_t step) {
    const int32_t a = left_of(key), b = right_of(key);
    std::unordered_map<uint64_t, int64_t> delta;
    std::vector<int32_t> where = std::move(where_[key]);
    where_.erase(key);
    for (int32_t w : where) {
      if (visited_[size_t(w)] == step) continue;
      visited_[size_t(w)] = step;
      Word& word = words_[size_t(w)];
      auto& s = word.syms;
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= word.count;
      size_t out = 0;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[out++] = new_id;
          i += 2;
        } else {
          s[out++] = s[i++];
        }
      }
      s.resize(out);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        uint64_t k = pair_key(s[i], s[i + 1]);
        delta[k] += word.count;
        if (s[i] == new_id || s[i + 1] == new_id) add_where(k, w);
      }
    }
    for (const auto& [k, d] : delta) {
      if (d == 0) continue;
      int64_t& c = counts_[k];
      c += d;
      if (c > 0) heap_.push(Entry{c, k});
    }
    counts_.erase(key);
  }

 private:
  struct Entry {
    int64_t count;
    uint64_t key;
  };
  // priority_queue puts the "largest" on top: higher count, then smaller left bytes, right bytes.
  struct Order {
    const std::vector<std::string>* tok;
    bool operator()(const Entry& x, const Entry& y) const {
      if (x.count != y.count) return x.count < y.count;
      const std::string& xl = (*tok)[size_t(left_of(x.key))];
      const std::string& yl = (*tok)[size_t(left_of(y.key))];
      if (xl != yl) return xl > yl;
      return (*tok)[size_t(right_of(x.key))] > (*tok)[size_t(right_of(y.key))];
    }
  };
  void add_where(uint64_t k, int32_t w) {
    auto& v = where_[k];
    if (v.empty() || v.back() != w) v.push_back(w);
  }

  std::vector<Word> words_;
  std::vector<std::string>& tok_;
  std::unordered_map<uint64_t, int64_t> counts_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;
  std::vector<int32_t> visited_;
  std::priority_queue<Entry, std::vector<Entry>, Order> heap_;
};

}  // namespace

Tokenizer BpeModel::tokenizer() const {
  return Tokenizer::from_vocab(tokens, merges, special_tokens, "trained BPE");
}

BpeModel train_bpe_texts(const std::vector<std::string>& texts, const BpeTrainerOptions& opts) {
  const int32_t n_special = int32_t(opts.special_tokens.size());
  LOOM_CHECK(opts.vocab_size >= 256 + n_special, "train_bpe: expected vocab_size >= ",
             256 + n_special, " (256 bytes + ", n_special, " special tokens), got ",
             opts.vocab_size);
  LOOM_CHECK(opts.min_frequency >= 1, "train_bpe: expected min_frequency >= 1, got ",
             opts.min_frequency);
  std::vector<std::string> tok_bytes;
  std::array<int32_t, 256> byte_id{};
  for (uint8_t b : base_byte_order()) {
    byte_id[b] = int32_t(tok_bytes.size());
    tok_bytes.emplace_back(1, char(b));
  }
  std::vector<Word> words = count_words(texts, opts.special_tokens, byte_id);
  LOOM_CHECK_T(DataError, !words.empty(), "train_bpe: the corpus is empty (no text to learn from)");
  BpeModel model;
  Trainer trainer(std::move(words), tok_bytes);
  for (int32_t step = 0; int32_t(tok_bytes.size()) + n_special < opts.vocab_size; ++step) {
    uint64_t key = 0;
    int64_t count = 0;
    if (!trainer.best(key, count) || count < opts.min_frequency) break;
    const int32_t new_id = int32_t(tok_bytes.size());
    tok_bytes.push_back(tok_bytes[size_t(left_of(key))] + tok_bytes[size_t(right_of(key))]);
    model.merges.emplace_back(bytes_to_token(tok_bytes[size_t(left_of(key))]),
                              bytes_to_token(tok_bytes[size_t(right_of(key))]));
    trainer.merge(key, new_id, step);
  }
  for (const std::string& t : tok_bytes) model.tokens.push_back(bytes_to_token(t));
  for (const std::string& s : opts.special_tokens) model.tokens.push_back(s);
  model.special_tokens = opts.special_tokens;
  return model;
}

BpeModel train_bpe(const std::vector<std::string>& corpus_files, const BpeTrainerOptions& opts) {
  LOOM_CHECK_T(DataError, !corpus_files.empty(),
               "train_bpe: expected at least one corpus file, got none");
  std::vector<std::string> texts;
  for (const std::string& path : corpus_files) {
    std::vector<std::string> docs = read_documents(path, opts.text_field);
    texts.insert(texts.end(), std::make_move_iterator(docs.begin()),
                 std::make_move_iterator(docs.end()));
  }
  return train_bpe_texts(texts, opts);
}

void save_bpe(const BpeModel& model, const std::string& vocab_json, const std::string& merges_txt) {
  std::string v = "{";
  for (size_t id = 0; id < model.tokens.size(); ++id)
    v += (id ? ", " : "") + nlohmann::json(model.tokens[id]).dump() + ": " + std::to_string(id);
  v += "}\n";
  std::string m = "#version: 0.2\n";
  for (const auto& [l, r] : model.merges) m += l + " " + r + "\n";
  for (const auto& [path, text] : {std::pair{vocab_json, v}, std::pair{merges_txt, m}}) {
    std::string tmp = path + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary);
      LOOM_CHECK_T(DataError, f.good(), "save_bpe: cannot write '", tmp, "'");
      f << text;
      LOOM_CHECK_T(DataError, f.good(), "save_bpe: write to '", tmp, "' failed");
    }
    std::filesystem::rename(tmp, path);
  }
}

}  // namespace loom::data

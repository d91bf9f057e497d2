"""Hugging Face `tokenizers` GPT-2 encode throughput, the reference for bench/bench_tokenizer.cpp.

Single-threaded (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false; one encode() call, no
encode_batch), same setup as the golden generator (BPE from vocab.json + merges.txt, ByteLevel
pre-tokenizer, <|endoftext|> special). Prints one JSON line like the C++ bench: the first pass,
the best of 3 further passes, and the best of 3 passes over the same ~16 KB chunks (cut after a
newline once a chunk exceeds 16384 bytes) that the C++ bench uses.
  python bench/tokenizer_hf.py --dump-golden-text /tmp/text.txt        # the tokenizer golden text
  python bench/tokenizer_hf.py /tmp/text.txt vocab.json merges.txt
"""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump-golden-text":
        import h5py
        here = os.path.dirname(os.path.abspath(__file__))
        with h5py.File(os.path.join(here, "..", "tests", "golden", "tokenizer.h5")) as f:
            data = f["gpt2/text"][()].tobytes()
        with open(sys.argv[2], "wb") as out:
            out.write(data)
        return
    text_path, vocab, merges = sys.argv[1:4]
    with open(text_path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    t0 = time.perf_counter()
    tok = Tokenizer(models.BPE.from_file(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    load = time.perf_counter() - t0

    def timed():
        s = time.perf_counter()
        n = len(tok.encode(text).ids)
        return time.perf_counter() - s, n

    cold, n = timed()
    warm = min(timed()[0] for _ in range(3))
    chunks, start = [], 0
    for i in range(len(raw)):
        if (raw[i] == 10 and i + 1 - start > 16384) or i + 1 == len(raw):
            chunks.append(raw[start:i + 1].decode("utf-8"))
            start = i + 1
    chunked = 1e30
    for _ in range(3):
        s = time.perf_counter()
        n_chunk = sum(len(tok.encode(c).ids) for c in chunks)
        chunked = min(chunked, time.perf_counter() - s)
    mb = len(raw) / 1e6
    print(json.dumps({"impl": "hf-tokenizers", "bytes": len(raw), "tokens": n,
                      "load_s": round(load, 3), "cold_mb_per_s": round(mb / cold, 2),
                      "cold_tokens_per_s": round(n / cold), "warm_mb_per_s": round(mb / warm, 2),
                      "warm_tokens_per_s": round(n / warm), "chunks": len(chunks),
                      "chunk_tokens": n_chunk, "chunked_mb_per_s": round(mb / chunked, 2)}))


if __name__ == "__main__":
    main()

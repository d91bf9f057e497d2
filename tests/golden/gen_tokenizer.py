"""Golden data for the GPT-2 tokenizer and BPE trainer tests (tests/data/TokenizerTest.cpp,
tests/data/BpeTrainerTest.cpp).

Builds ~3.4 MB of varied text deterministically (Python stdlib sources for English prose and code,
this repo's C++ sources, and synthesised text in many Unicode scripts, emoji, whitespace runs,
numbers and contractions), encodes it with Hugging Face `tokenizers` set up as GPT-2 (BPE from vocab.json +
merges.txt, i.e. GPT-2's encoder.json + vocab.bpe; ByteLevel pre-tokenizer and decoder;
<|endoftext|> as a special token) and writes text, ids, the tokenizer
files and HF's tokenizer.json into tokenizer.h5 so the C++ tests need neither Python nor the network.

The trainer part runs a slow, obviously-correct reference BPE trainer (below) with Loom's documented
tie-breaking on a small corpus, stores its merges, and stores the ids HF assigns to a probe text when
it loads that reference vocab; the C++ trainer must reproduce both.
Usage: python tests/golden/gen_tokenizer.py [path/to/gpt2/dir]   (default /work/shared/data/gpt2)
"""
import glob
import json
import os
import random
import sys
import sysconfig
import tempfile

import h5py
import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GPT2_DIR = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/gpt2"
EOT = "<|endoftext|>"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stdlib_text(limit):
    """English docstrings and Python code from a fixed, sorted list of stdlib modules."""
    root = sysconfig.get_paths()["stdlib"]
    names = ["argparse.py", "difflib.py", "textwrap.py", "collections/__init__.py", "decimal.py",
             "email/message.py", "json/decoder.py", "unittest/case.py", "pathlib.py",
             "random.py", "statistics.py", "fractions.py", "typing.py", "calendar.py"]
    out = []
    for n in names:
        p = os.path.join(root, n)
        if os.path.exists(p):
            out.append(read(p).decode("utf-8", "replace"))
    return "\n".join(out)[:limit]


def repo_text(limit):
    files = sorted(glob.glob(os.path.join(REPO, "core", "**", "*.*"), recursive=True))
    files = [f for f in files if f.endswith((".h", ".cpp", ".cu"))]
    return "\n".join(read(f).decode("utf-8", "replace") for f in files)[:limit]


SCRIPTS = [(0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x00FF), (0x0100, 0x017F),
           (0x0391, 0x03C9), (0x0410, 0x044F), (0x05D0, 0x05EA), (0x0627, 0x064A),
           (0x0905, 0x0939), (0x0E01, 0x0E2E), (0x3041, 0x3096), (0x30A1, 0x30FA),
           (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x10A0, 0x10FA), (0x0531, 0x0556)]
EMOJI = ["😀", "🚀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "🇩🇪", "❤️", "🔥", "🤖", "🧪", "✨", "🏳️‍🌈", "👩🏿‍💻"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u2003", "\u3000",
          "\u2009", "\u0085", "\u000b", "\u000c", "\u200b", "\u2028", "\u202f", "\u1680"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "’s", "n't", "'",
                "''", "'x"]
PUNCT = [".", ",", "!", "?", "...", "—", "–", "(", ")", "[", "]", "{", "}", "«", "»", "„", "“",
         "”", "§", "©", "°", "±", "×", "÷", "→", "∑", "∫", "≈", "≠", "√", "∞", "€", "$", "£",
         "¥", "@", "#", "%", "&", "*", "==", "!=", "->", "::", "<<", ">>", "/*", "*/", "//"]


def synth_word(rng):
    lo, hi = rng.choice(SCRIPTS)
    w = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12)))
    if rng.random() < 0.1:
        w += chr(rng.choice([0x0301, 0x0308, 0x0327, 0x093F, 0x0E31]))  # combining marks
    return w


def synth_number(rng):
    kind = rng.randint(0, 5)
    if kind == 0:
        return str(rng.randint(0, 10 ** rng.randint(1, 15)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 6)}f}"
    if kind == 2:
        return "".join(chr(0x0660 + rng.randint(0, 9)) for _ in range(rng.randint(1, 6)))
    if kind == 3:
        return "".join(chr(0x0966 + rng.randint(0, 9)) for _ in range(rng.randint(1, 6)))
    if kind == 4:
        return rng.choice(["½", "²", "Ⅻ", "①", "٣", "１２３", "0x1F", "1e-5", "3.14"])
    return f"{rng.randint(1, 31)}/{rng.randint(1, 12)}/{rng.randint(1900, 2100)}"


def synth_text(n_chars, seed):
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_chars:
        r = rng.random()
        if r < 0.45:
            t = synth_word(rng)
        elif r < 0.55:
            t = synth_number(rng)
        elif r < 0.62:
            t = rng.choice(EMOJI) * rng.randint(1, 3)
        elif r < 0.70:
            t = rng.choice(PUNCT)
        elif r < 0.77:
            t = rng.choice(["I", "you", "we", "they", "it", "don", "can", "She", "WE"]) + \
                rng.choice(CONTRACTIONS)
        elif r < 0.80:
            t = rng.choice(SPACES) * rng.randint(2, 40)  # whitespace runs
        elif r < 0.805:
            t = EOT
        elif r < 0.81:
            t = rng.choice("ab -\n") * rng.randint(50, 400)  # long runs (long-word BPE path)
        else:
            t = ""
        t += rng.choice(SPACES) if rng.random() < 0.4 else " "
        out.append(t)
        size += len(t)
    return "".join(out)


def reference_train(corpus, vocab_size, min_frequency, specials):
    """Slow reference BPE trainer. Base ids follow GPT-2's byte order; each step merges the pair
    with the highest count, ties broken by the smallest (left bytes, right bytes); stops at
    vocab_size (specials included, appended last) or when the best count < min_frequency."""
    byte_enc = pre_tokenizers.ByteLevel.alphabet()  # only used to sanity-check the alphabet size
    assert len(byte_enc) == 256
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    dec = {v: k for k, v in bytes_to_unicode().items()}
    words = {}
    for text in corpus:
        segments = [text]
        for s in specials:
            segments = [p for seg in segments for p in seg.split(s)]
        for seg in segments:
            for piece, _ in pre.pre_tokenize_str(seg):
                b = bytes(dec[c] for c in piece)
                words[b] = words.get(b, 0) + 1
    order = base_order()
    tok_bytes = [bytes([b]) for b in order]
    id_of_byte = {b: i for i, b in enumerate(order)}
    seqs = {w: [id_of_byte[b] for b in w] for w in words}
    merges = []
    while len(tok_bytes) + len(specials) < vocab_size:
        counts = {}
        for w, c in words.items():
            s = seqs[w]
            for i in range(len(s) - 1):
                counts[(s[i], s[i + 1])] = counts.get((s[i], s[i + 1]), 0) + c
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], tok_bytes[p[0]], tok_bytes[p[1]]))
        if counts[best] < min_frequency:
            break
        new = len(tok_bytes)
        tok_bytes.append(tok_bytes[best[0]] + tok_bytes[best[1]])
        merges.append(best)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    enc = bytes_to_unicode()
    as_str = lambda b: "".join(enc[x] for x in b)
    vocab = {as_str(b): i for i, b in enumerate(tok_bytes)}
    for s in specials:
        vocab[s] = len(vocab)
    merge_lines = [f"{as_str(tok_bytes[a])} {as_str(tok_bytes[b])}" for a, b in merges]
    return vocab, merge_lines


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def base_order():
    return list(bytes_to_unicode().keys())


def hf_tokenizer(vocab_path, merges_path, specials):
    tok = Tokenizer(models.BPE.from_file(vocab_path, merges_path))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def u8(b):
    return np.frombuffer(b, dtype=np.uint8)


def main():
    vocab_path = os.path.join(GPT2_DIR, "encoder.json")
    merges_path = os.path.join(GPT2_DIR, "vocab.bpe")
    hf = hf_tokenizer(vocab_path, merges_path, [EOT])
    assert hf.token_to_id(EOT) == 50256 and hf.get_vocab_size() == 50257
    text = stdlib_text(1_700_000) + "\n" + repo_text(400_000) + "\n" + synth_text(900_000, 1234)
    ids = hf.encode(text).ids
    assert hf.decode(ids, skip_special_tokens=False) == text
    tokenizer_json = hf.to_str().encode("utf-8")
    out = {"gpt2/text": u8(text.encode("utf-8")), "gpt2/ids": np.asarray(ids, dtype=np.int32),
           "gpt2/vocab_json": u8(read(vocab_path)), "gpt2/merges_txt": u8(read(merges_path)),
           "gpt2/tokenizer_json": u8(tokenizer_json)}

    corpus = [stdlib_text(60_000)[20_000:], synth_text(20_000, 99) + EOT + "tail text"]
    vocab, merge_lines = reference_train(corpus, vocab_size=600, min_frequency=2, specials=[EOT])
    with tempfile.TemporaryDirectory() as d:
        vp, mp = os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")
        with open(vp, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(mp, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merge_lines) + "\n")
        tok = hf_tokenizer(vp, mp, [])
        probe = repo_text(30_000) + synth_text(10_000, 7).replace(EOT, "")
        probe_ids = tok.encode(probe).ids
        assert tok.decode(probe_ids) == probe
    for i, c in enumerate(corpus):
        out[f"trainer/corpus{i}"] = u8(c.encode("utf-8"))
    out["trainer/merges"] = u8(("\n".join(merge_lines) + "\n").encode("utf-8"))
    out["trainer/probe"] = u8(probe.encode("utf-8"))
    out["trainer/probe_ids"] = np.asarray(probe_ids, dtype=np.int32)
    out["trainer/vocab_size"] = np.asarray(600, dtype=np.int64)
    out["trainer/min_frequency"] = np.asarray(2, dtype=np.int64)

    path = os.path.join(HERE, "tokenizer.h5")
    with h5py.File(path + ".tmp", "w") as f:
        for name, value in sorted(out.items()):
            if value.ndim == 0:
                f.create_dataset(name, data=value)
            else:
                f.create_dataset(name, data=value, compression="gzip", compression_opts=9,
                                 shuffle=True)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}: text {len(text.encode())} bytes, {len(ids)} ids, "
          f"{len(merge_lines)} trainer merges, {os.path.getsize(path)} bytes on disk")


if __name__ == "__main__":
    main()

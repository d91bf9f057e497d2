"""Golden data for Hugging Face tokenizer.json pipelines and chat templates (tests/data/
HfTokenizerTest.cpp, tests/data/ChatTemplateJinjaTest.cpp, tests/rlhf/HfChatTemplateTest.cpp).

Run with: tokenizers 0.20.3, transformers 4.45.2, jinja2 3.1.4, h5py 3.16.0, numpy 2.4.6
  PYTHONPATH=<dir with jinja2 3.1.4> /work/main/.venv/bin/python tests/golden/gen_hf_tokenizers.py

Trains four small tokenizers WITH the `tokenizers` library (BpeTrainer, a few thousand tokens) on
part of the golden text of tokenizer.h5 ("gpt2/text": prose, code, many scripts, emoji, whitespace
runs) and writes each to tests/golden/tokenizers/<name>/tokenizer.json:
  llama3   byte-level BPE, Split(Llama-3 regex, Isolated) + ByteLevel(use_regex=false),
           ignore_merges (with vocab words the merges cannot build, as in Llama-3),
           <|begin_of_text|> post-processor, Llama-3 special tokens
  qwen2    byte-level BPE, NFC normalizer, Split(Qwen2 regex), <|im_start|>/<|im_end|>, the same
           kind of extra vocab words without ignore_merges, plus two added tokens with flags
           (lstrip/rstrip/normalized and single_word)
  mistral  SentencePiece-style BPE with byte_fallback (<0x00>..<0xFF>), Prepend+Replace normalizer,
           no pre-tokenizer, Replace/ByteFallback/Fuse/Strip decoder, merges as "a b" strings
  llama2_metaspace  the same model behind a Metaspace(prepend_scheme=first) pre-tokenizer
With each tokenizer.json goes a tokenizer_config.json holding the model family's chat template
(Llama-3-Instruct, Qwen2-Instruct ChatML, Mistral-Instruct) and its bos/eos tokens.

hf_tokenizers.h5 holds, per tokenizer, HF's ids of the whole golden text (int32; their count, the first
HEAD_IDS in full, and an FNV-1a-64 hash of every block of BLOCK_IDS ids: all ids would be ~5 MB)
and the length and FNV-1a-64 hash of HF's decode of them (with and without skip_special_tokens), plus
"probes_json": hard probe strings with HF's ids (add_special_tokens false/true) and decodes, and
transformers' apply_chat_template output (or error message) on multi-turn conversations.
"""
import json
import os

import h5py
import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from tokenizers import pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "tokenizers")
VOCAB_SIZE = 4000
HEAD_IDS = 65536  # ids stored in full
EXTRA_WORDS = 40  # vocab words without a merge path (ignore_merges matters for them)
BLOCK_IDS = 8192  # ids per FNV-1a-64 hash (over their int32 little-endian bytes)

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Meta-Llama-3-8B-Instruct's chat template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
    "<|end_header_id|>\\n\\n' }}{% endif %}")
# Qwen2-Instruct's ChatML template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Mistral-7B-Instruct (v0.1/v0.2 after the 2024 update): optional system message folded into the
# first user turn, strict user/assistant alternation enforced with raise_exception.
MISTRAL_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>", "<|reserved_special_token_0|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def golden_text():
    with h5py.File(os.path.join(HERE, "tokenizer.h5"), "r") as f:
        return f["gpt2/text"][()].tobytes().decode("utf-8")


def training_corpus(text):
    """Every other 8 KB slice of the text (~1.3 MB, all of its kinds), cut into lines."""
    chunks = [text[i:i + 8192] for i in range(0, len(text), 16384)]
    return [line for c in chunks for line in c.splitlines(keepends=True)]


def byte_level_tokenizer(pattern, corpus, specials, ignore_merges, normalizer=None):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    # Like Llama-3's vocab (converted from tiktoken), add whole words that the merges split into
    # several tokens: with ignore_merges HF emits them whole, without it never.
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = ignore_merges
    vocab = j["model"]["vocab"]
    counts = {}
    for line in corpus[:20000]:
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(line):
            counts[piece] = counts.get(piece, 0) + 1
    frequent = sorted(counts, key=lambda p: (-counts[p], p))
    extra = [p for p in frequent if p not in vocab and len(tok.encode(p).ids) >= 3][:EXTRA_WORDS]
    for p in extra:
        vocab[p] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(j))
    tok.add_special_tokens(specials)  # ids after the model vocabulary, as in Llama-3 / Qwen2
    return tok


def build_llama3(corpus):
    tok = byte_level_tokenizer(LLAMA3_PATTERN, corpus, LLAMA3_SPECIALS, ignore_merges=True)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return tok, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                 "chat_template": LLAMA3_TEMPLATE}


def build_qwen2(corpus):
    tok = byte_level_tokenizer(QWEN2_PATTERN, corpus, QWEN2_SPECIALS, ignore_merges=False,
                               normalizer=normalizers.NFC())
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # Flags HF honours when matching added tokens: strip spaces around a normalized plain token,
    # and a special token that only matches as a whole word.
    tok.add_tokens([AddedToken("<tool>", special=False, normalized=True, lstrip=True,
                               rstrip=True)])
    tok.add_special_tokens([AddedToken("[MASK]", special=True, normalized=False,
                                       single_word=True)])
    return tok, {"bos_token": None, "eos_token": "<|im_end|>", "chat_template": CHATML_TEMPLATE}


def sentencepiece_model(corpus):
    """BPE trained on Metaspace words; ids: <unk>, <s>, </s>, <0x00>..<0xFF>, then merges."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, show_progress=False, limit_alphabet=200,
                                  special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens)
    tok.train_from_iterator(corpus, trainer)
    j = json.loads(tok.to_str())
    # As in Llama-2 / Mistral files: byte tokens live in the model vocab, not in added_tokens.
    j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] in ("<unk>", "<s>", "</s>")]
    j["model"]["byte_fallback"] = True
    j["model"]["fuse_unk"] = True
    return j


def build_mistral(model_json):
    j = json.loads(json.dumps(model_json))
    j["pre_tokenizer"] = None
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    tok = Tokenizer.from_str(json.dumps(j))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(content=" ", left=1, right=0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", 1)])
    tok.add_tokens([AddedToken("foo bar", special=False, normalized=True)])
    return tok, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                 "chat_template": MISTRAL_TEMPLATE}


def build_llama2_metaspace(model_json):
    j = json.loads(json.dumps(model_json))
    j["normalizer"] = None
    tok = Tokenizer.from_str(json.dumps(j))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                 split=False)
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                     decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", 1)])
    return tok, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


PROBES = [
    "", " ", "  two leading", "trailing two  ", "\r\n", "a\r\nb\r\n\r\n", "\n\n\n", "\t \t",
    "1234567890123", "3.14159 and 2,718,281", "٣٤٥ ١٢", "Hello world", " Hello world",
    "I'M sure you'RE right, don't", "ſ's Kelvin K's", "İstanbul ǅemal ﬁne",
    "e\u0301 vs \u00e9, A\u030a, \u1e9b\u0323", "Ω ≠ \u2126", "😀🚀👍🏽 👨‍👩‍👧‍👦 🇯🇵",
    "中文字符串测试", "한국어 텍스트", "ελληνικά και русский", "\u00a0\u2003\u3000x\u200b",
    "<|begin_of_text|>Hello<|eot_id|>", "Hi <|eot_id|> there", "<|eot_id|><|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<|im_start|>user\nhi<|im_end|>\n",
    "x<|endoftext|>y", "<s>[INST] hi [/INST] yo</s>", "a <s> b </s> c", "<0x41><unk>",
    "▁already ▁meta", "a[MASK]b [MASK] c", "[MASK]", "x <tool>  y", "<tool>", "foo bar foo  bar",
    "\ufeffBOM", "\ufffd replacement", "\x00\x01\x7f control", "ÿþ latin",
    "     \n    indented()", "def f(x):\n\treturn x**2  # sq\n",
]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is 2+2?"},
               {"role": "assistant", "content": "4"}],
    "system_multi": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "Hi there!"},
                     {"role": "assistant", "content": "Hello. How can I help?"},
                     {"role": "user", "content": "Name a prime.\nJust one."},
                     {"role": "assistant", "content": " 7 \n"}],
    "multi_no_system": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"},
                        {"role": "assistant", "content": "d [/INST] <s> e"},
                        {"role": "user", "content": "Ünïcödé 😀?"}],
    "user_only": [{"role": "user", "content": "  spaced  "}],
    "system_only_user": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
    "not_alternating": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "tool_role": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}],
}


# The Jinja subset beyond the three templates, rendered by transformers' own environment
# (_compile_jinja_template: trim_blocks, lstrip_blocks, its tojson and raise_exception).
JINJA_MESSAGES = [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": " Héllo,\nworld "},
                  {"role": "assistant", "content": "Hi!"}]
JINJA_CASES = [
    "{% for m in messages %}{{ loop.index0 }}/{{ loop.index }}/{{ loop.length }}"
    "{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ loop.revindex }}:{{ m.role }}="
    "{{ m['content'] }};{% endfor %}",
    "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'system' %}"
    "{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} "
    "{{ ns.n }}",
    "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"
    "{% if true %}{% set y = 'if-set' %}{% endif %}{{ y }}",
    "{{ messages[1:] | length }}{{ messages[-1].content }}{{ 'abcdef'[1:4] }}{{ 'abcdef'[::-1] }}"
    "{{ [1, 2, 3, 4][::2] }}{{ 'héllo'[1:3] }}{{ messages[5] is defined }}{{ 'abc'[-5:2] }}",
    "{{ '  x y  ' | trim }}|{{ 'Straße' | upper }}|{{ 'ÀB' | lower }}|{{ x | default('d') }}|"
    "{{ none | default('d') }}|{{ '' | default('e', true) }}|{{ [1, 2] | length }}|"
    "{{ 'añb' | length }}|{{ messages[1].content | trim }}|{{ ['a', 'b'] | join('-') }}|"
    "{{ 'aXbX' | replace('X', '.') }}|{{ messages | first | tojson }}",
    "{{ messages | tojson }}|{{ 'é\"\\n\t' | tojson }}|"
    "{{ {'a': [1, 2.5, none, true], 'b': {}} | tojson(indent=2) }}",
    "{{ x is defined }}{{ messages is defined }}{{ none is none }}{{ 'a' is string }}"
    "{{ 1 is string }}{{ x is not defined }}{{ 3 is odd }}{{ messages[0] is mapping }}"
    "{{ 1 is number }}{{ 4 is divisibleby(2) }}{{ not x is defined }}",
    "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"
    " {{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ 1 < 2 < 3 }} {{ 'a' in 'cat' }} {{ 2 not in [1] }}"
    " {{ not true or false and true }} {{ (1 == 1) != (2 == 3) }} {{ 'b' > 'a' }} {{ 1 == 1.0 }}"
    " {{ [1] + [2] }} {{ 0 or 'x' }} {{ '' and 'y' }} {{ -(3) }}",
    "A\n  {% if true %}\n    B\n  {%- endif %}\n{# comment #}\nC {{- ' D ' -}} E\n"
    "{%+ if true %}F{% endif %}\n  {#- c -#}  G\n",
    "{{ 'a\\tb\\u00e9' }}|{{ \"q'\" }}|{{ ' x '.strip() }}|{{ 'abc'.startswith('ab') }}|"
    "{{ 'a,b'.split(',') }}|{{ 'AbC'.lower() }}|{{ messages[0].get('role') }}|"
    "{{ messages[0].get('nope', 'dflt') }}|{{ ' a  b '.split() }}|{{ 'xxy'.rstrip('y') }}|"
    "{{ 'ab' 'cd' }}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role[0] }}{% else %}none"
    "{% endfor %}|{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}|"
    "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}|{% for i in [] %}x{% else %}empty"
    "{% endfor %}|{% for c in 'hé' %}[{{ c }}]{% endfor %}",
    "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 2.5e-7 }}|{{ 1e20 }}|{{ 123456.5 }}|{{ [1, 'a', none] }}|"
    "{{ {'k': 'v', 'q': \"it's\"} }}|{{ undefined_thing }}|{{ 0.1 + 0.2 }}",
    "{% for m in messages %}{% if m.role == 'user' %}U{% elif m.role == 'assistant' %}A"
    "{% elif m.role == 'system' %}S{% else %}?{% endif %}{% endfor %}",
    "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
    "{% endgeneration %}{% endif %}{% endfor %}",
    "{% for i in range(3) %}{{ i }}{% endfor %}{{ 'a' if false else 'b' if true else 'c' }}"
    "{{ range(1, 7, 2) | list }}",
    "line1\r\nline2 {{ 'x' }}\r\n",
    "  {%- if true %}x{% endif %}\n\t{% if true %}y\n\t{% endif %}z\n  {{ 'v' }}\n",
    "{{ raise_exception('custom ' ~ messages | length) }}",
    "{{ undefined_var + 'a' }}",
    "{{ 'a' + 1 }}",
    "{% set n = 5 %}{{ n / 0 }}",
]


def jinja_goldens():
    from transformers.utils.chat_template_utils import _compile_jinja_template
    out = []
    for src in JINJA_CASES:
        rec = {"template": src, "variables": {"messages": JINJA_MESSAGES}}
        try:
            rec["text"] = _compile_jinja_template(src).render(messages=JINJA_MESSAGES)
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        out.append(rec)
    return out


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def as_int64(hashes):
    """uint64 hashes stored bit-for-bit as int64 (the C++ golden reader has no unsigned types)."""
    return np.asarray(hashes, dtype=np.uint64).view(np.int64)


def chat_goldens(name, tok_dir):
    hf = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    out = []
    for conv_name, conv in CONVERSATIONS.items():
        for gen in (False, True):
            rec = {"conversation": conv_name, "add_generation_prompt": gen}
            try:
                rec["text"] = hf.apply_chat_template(conv, tokenize=False,
                                                     add_generation_prompt=gen)
            except Exception as e:  # the templates' raise_exception
                rec["error"] = str(e)
            out.append(rec)
    return out


def write_model(name, tok, config):
    d = os.path.join(OUT_DIR, name)
    os.makedirs(d, exist_ok=True)
    j = json.loads(tok.to_str())
    if name == "mistral":  # keep HF's other merges format in one file
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                                for m in j["model"]["merges"]]
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=None, separators=(",", ":"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096}
    cfg.update({k: v for k, v in config.items() if v is not None})
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")
    return d


def main():
    text = golden_text()
    corpus = training_corpus(text)
    sp = sentencepiece_model(corpus)
    built = {"llama3": build_llama3(corpus), "qwen2": build_qwen2(corpus),
             "mistral": build_mistral(sp), "llama2_metaspace": build_llama2_metaspace(sp)}
    probes = {"probes": PROBES, "conversations": CONVERSATIONS, "jinja_cases": jinja_goldens()}
    path = os.path.join(HERE, "hf_tokenizers.h5")
    with h5py.File(path + ".tmp", "w") as f:
        for name, (tok, config) in built.items():
            d = write_model(name, tok, config)
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # what C++ reads
            ids = tok.encode(text, add_special_tokens=False).ids
            assert tok.get_vocab_size() < 65536
            # All ids would take ~5 MB; keep the first HEAD_IDS and a hash per block of ids.
            arr = np.asarray(ids, dtype="<i4")
            f.create_dataset(f"{name}/text_ids_head", data=arr[:HEAD_IDS],
                             compression="gzip", compression_opts=9, shuffle=True)
            f.create_dataset(f"{name}/text_ids_count", data=np.int64(len(ids)))
            f.create_dataset(f"{name}/text_ids_block_fnv", data=as_int64(
                [fnv1a64(arr[i:i + BLOCK_IDS].tobytes()) for i in range(0, len(arr), BLOCK_IDS)]))
            for skip in (False, True):
                dec = tok.decode(ids, skip_special_tokens=skip).encode("utf-8")
                key = "decode_skip" if skip else "decode"
                f.create_dataset(f"{name}/text_{key}_len", data=np.int64(len(dec)))
                f.create_dataset(f"{name}/text_{key}_fnv", data=as_int64([fnv1a64(dec)]))
            probes[name] = [{"ids": tok.encode(p, add_special_tokens=False).ids,
                             "ids_special": tok.encode(p, add_special_tokens=True).ids,
                             "decode": tok.decode(tok.encode(p).ids, skip_special_tokens=False),
                             "decode_skip": tok.decode(tok.encode(p).ids,
                                                       skip_special_tokens=True)}
                            for p in PROBES]
            if "chat_template" in config:
                probes[name + "_chat"] = chat_goldens(name, d)
            print(f"{name}: vocab {tok.get_vocab_size()}, {len(ids)} ids for "
                  f"{len(text.encode())} bytes")
        blob = json.dumps(probes, ensure_ascii=False).encode("utf-8")
        f.create_dataset("probes_json", data=np.frombuffer(blob, dtype=np.uint8),
                         compression="gzip", compression_opts=9)
    os.replace(path + ".tmp", path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the small seed files of fuzz/corpus/<target>/ that `make fuzz` starts from.

Run once during development (python3 scripts/gen_fuzz_seeds.py); the files are committed and
the build never runs Python. Each seed is a valid input of its target (see fuzz/*.c for the
input layouts), so mutations explore the validation paths one field at a time."""
import json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")
SEP = b"\xfe\xff\xfe"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes), written in this order like HF does"""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "all_dtypes", safetensors([
    ("f64", "F64", [2], struct.pack("<2d", 1.5, -2)), ("i64", "I64", [1, 2], struct.pack("<2q", 7, -7)),
    ("f32", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), ("i32", "I32", [], struct.pack("<i", 42)),
    ("bf16", "BF16", [2], b"\x80\x3f\x00\x40"), ("f16", "F16", [2], b"\x00\x3c\x00\x40"),
    ("u8", "U8", [3], b"\x01\x02\x03"), ("bool", "BOOL", [2], b"\x00\x01")], {"format": "pt"}))
put("safetensors", "empty", safetensors([]))
put("safetensors", "zero_size", safetensors([("z", "F32", [0, 4], b""), ("a", "F32", [1], struct.pack("<f", 1))]))

# llama2.c checkpoints: dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab 6, seq_len 2
def llama2c(vocab_sign):
    dim, hid, L, nh, nkv, V, T = 8, 12, 1, 2, 1, 6, 2
    hs = dim // nh
    kv = nkv * hs
    n = V * dim + L * dim + L * dim * dim + 2 * L * dim * kv + L * dim * dim + L * dim + 3 * L * dim * hid + dim + T * hs
    if vocab_sign < 0:
        n += V * dim
    return struct.pack("<7i", dim, hid, L, nh, nkv, vocab_sign * V, T) + struct.pack("<%df" % n, *[i * 0.01 for i in range(n)])


put("llama2c", "shared", llama2c(1))
put("llama2c", "separate", llama2c(-1))


# GPT-2: a 256-byte vocabulary with a few merges (as tests/test_tokenizers.c builds it)
def byte_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


bc = byte_chars()
merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "l l", "o w", "Ġ w", "o r", "Ġw or", "l d", "' s", "Ġ Ġ", "Ċ Ċ"]
enc = {bc[b]: b for b in range(256)}
for i, m in enumerate(merges):
    enc[m.replace(" ", "")] = 256 + i
enc["<|endoftext|>"] = 256 + len(merges)
put("gpt2_tokenizer", "small", json.dumps(enc, ensure_ascii=False).encode() + SEP +
    ("#version: 0.2\n" + "\n".join(merges) + "\n").encode() + SEP +
    "Hello world, it's the 2024 wörld  \n\n<|endoftext|> 日本".encode())


# llama2.c tokenizer.bin: <unk> <s> </s>, 256 byte tokens, a few pieces
def tokenizer_bin(pieces):
    out = struct.pack("<i", max(len(p.encode()) for p, _ in pieces))
    for p, s in pieces:
        b = p.encode()
        out += struct.pack("<fi", s, len(b)) + b
    return out


full = [("<unk>", 0), ("\n<s>\n", 0), ("\n</s>\n", 0)] + [("<0x%02X>" % b, 0) for b in range(256)]
full += [(" ", -1), ("a", -2), ("b", -3), ("ab", -0.5), (" ab", -0.2), ("é", -4), ("éé", -5), (" the", -6), ("the", -7)]
put("llama2c_tokenizer", "bytes", struct.pack("<H", 0) + tokenizer_bin(full) + SEP + "ab the é éé\xff".encode())
small = [("<unk>", 0), ("\n<s>\n", 0), ("\n</s>\n", 0), (" ", -1), ("x", -2), ("xx", -1.5)]
put("llama2c_tokenizer", "small", struct.pack("<H", 6) + tokenizer_bin(small) + SEP + b"xxx")

# Ember's own tokenizer files, and texts for the trainer and the char tokenizer
bpe_file = b"EMBERTOK" + struct.pack("<III", 1, 2, 3) + struct.pack("<6i", ord("t"), ord("h"), 256, ord("e"), ord(" "), 257)
char_file = b"EMBERTOK" + struct.pack("<III", 1, 3, 4) + b"\x01 \x01a\x02\xc3\xa9\x03\xe6\x97\xa5"
put("bpe", "saved_bpe", b"\x00" + bpe_file + SEP + b"the then the")
put("bpe", "saved_char", b"\x00" + char_file + SEP + "a é 日".encode())
put("bpe", "train", b"\x01\x20" + "the cat sat on the mat, the cat ate the rat <|endoftext|> café 12 123".encode())
put("bpe", "char", b"\x02" + "hello wörld 日本 ".encode() + b"\xff")

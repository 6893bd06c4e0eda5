/* test_tokenizers.c - GPT-2 byte-level BPE (pre-tokenization on tricky strings, exact ids on a
 * small hand-made encoder.json/vocab.bpe, every loader error), the llama2.c tokenizer.bin
 * (run.c's encode and decode on a generated vocabulary, every loader error), the BPE trainer
 * and the char tokenizer (round trips of arbitrary bytes, save/load, file errors).
 *
 * The expected ids were computed by OpenAI's encoder.py algorithm and by run.c's encode()
 * (re-implemented in Python) on these same fixtures. Nothing here reads ../shared: every
 * fixture is generated into a mkdtemp directory and removed. */
#include "harness.h"

#include "io/io.h"

#include <unistd.h>

static char tmpdir[64];
static char paths[64][128];
static int npaths;

static const char *tpath(const char *name) {
    for (int i = 0; i < npaths; i++) /* reuse a slot for the same name */
        if (!strcmp(strrchr(paths[i], '/') + 1, name)) return paths[i];
    EM_ASSERT(npaths < 64);
    snprintf(paths[npaths], sizeof paths[0], "%s/%s", tmpdir, name);
    return paths[npaths++];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    EM_ASSERT(f && fwrite(p, 1, n, f) == n);
    fclose(f);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void fmt_ids(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && at + 12 < cap; i++) at += (size_t)snprintf(buf + at, cap - at, "%s%d", i ? " " : "", ids[i]);
}

/* encode then decode gives the bytes back */
static bool roundtrip(const em_tokenizer_t *t, const char *s, size_t n, bool bos) {
    int32_t *ids;
    size_t k, m;
    if (em_tokenizer_encode(t, s, n, bos, &ids, &k)) return false;
    char *back = em_tokenizer_decode(t, ids, k, &m);
    bool ok = back && m == n && !memcmp(back, s, n) && back[m] == 0;
    /* streaming decode gives the same bytes */
    char *stream = malloc(n + 1);
    size_t at = 0;
    for (size_t i = 0; i < k && ok; i++) {
        size_t len;
        const char *p = em_tokenizer_decode_one(t, i ? ids[i - 1] : -1, ids[i], &len);
        ok = p && at + len <= n && (memcpy(stream + at, p, len), true);
        at += len;
    }
    ok = ok && at == n && !memcmp(stream, s, n);
    free(stream);
    free(back);
    free(ids);
    return ok;
}

/* ---- GPT-2 pre-tokenization (expected pieces from regex.findall with GPT-2's pattern) ----------- */
typedef struct {
    const char *text;
    const char *pieces[24];
} split_case;

static const split_case split_cases[] = {
    {"Hello world", {"Hello", " world", NULL}},
    {"I'm can't they're we've he'll she'd IT'S 'twas", {"I", "'m", " can", "'t", " they", "'re", " we", "'ve", " he", "'ll", " she", "'d", " IT", "'", "S", " '", "twas", NULL}},
    {"  multiple   spaces  ", {" ", " multiple", "  ", " spaces", "  ", NULL}},
    {"trailing   ", {"trailing", "   ", NULL}},
    {"line1\nline2\n\n\nline3 \n ", {"line", "1", "\n", "line", "2", "\n\n", "\n", "line", "3", " \n ", NULL}},
    {"3.14159 1,000,000 x2", {"3", ".", "14159", " 1", ",", "000", ",", "000", " x", "2", NULL}},
    {"h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac", {"h\xc3\xa9llo", " w\xc3\xb6rld", " \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", " \xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac", NULL}},
    {"emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd!", {"emoji", " \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd!", NULL}},
    {"tabs\tand\r\nCRLF", {"tabs", "\t", "and", "\r", "\n", "CRLF", NULL}},
    {"a \n b", {"a", " \n", " b", NULL}},
    {"\xc2\xa0\xe2\x80\x83x\xe3\x80\x80y", {"\xc2\xa0", "\xe2\x80\x83", "x", "\xe3\x80\x80", "y", NULL}},
    {"\xe2\x85\xab\xc2\xb2\xc2\xbe\xd9\xa3 abc", {"\xe2\x85\xab\xc2\xb2\xc2\xbe\xd9\xa3", " abc", NULL}},
    {"$$$ !!!?? 'quote'", {"$$$", " !!!??", " '", "quote", "'", NULL}},
    {"don't", {"don", "'t", NULL}},
    {"''s", {"''", "s", NULL}},
    {" 's", {" '", "s", NULL}},
    {"x\x1c y", {"x", "\x1c", " y", NULL}},
    /* not from regex (Python strings cannot hold invalid UTF-8): each bad byte is "other" */
    {"ab\xff\xfe c\x80", {"ab", "\xff\xfe", " c", "\x80", NULL}},
};

typedef struct {
    const char *s;
    const char *const *want;
    int k;
    bool ok;
} split_check;

static em_status check_piece(void *ctx, size_t start, size_t end) {
    split_check *c = ctx;
    const char *w = c->want[c->k++];
    if (!w || strlen(w) != end - start || memcmp(w, c->s + start, end - start)) c->ok = false;
    return EM_OK;
}

static void test_gpt2_split(void) {
    for (int i = 0; i < EM_ARRAY_LEN(split_cases); i++) {
        const split_case *sc = &split_cases[i];
        split_check c = {sc->text, sc->pieces, 0, true};
        emio_gpt2_split((const uint8_t *)sc->text, strlen(sc->text), check_piece, &c);
        TH_CHECK(c.ok && sc->pieces[c.k] == NULL, "pre-tokenization of \"%s\"", sc->text);
    }
    TH_CHECK(emio_is_letter(0x00E9) && emio_is_letter(0x65E5) && !emio_is_letter('1') && emio_is_number(0x2160) &&
             emio_is_number(0x0663) && emio_is_space(0x3000) && !emio_is_space(0x1C) && !emio_is_letter(0x1F600),
             "Unicode classes");
}

/* ---- GPT-2 tokenizer on a hand-made vocabulary ------------------------------------------------ */
static const char *gpt2_merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he", "i n", "\xc4\xa0 a", "e r", "l l", "o w", "a a",
                                    "\xc4\xa0 w", "\xc4\xa0w or", "o r", "l d", "\xc4\xa0 1", "1 2", "' s", "\xc4\xa0 \xc4\xa0",
                                    "H e", "He ll", "\xc4\xa0wor ld", "\xc3\x83 \xc2\xa9", "\xc4\x8a \xc4\x8a"};
#define N_MERGES 22

/* GPT-2's bytes_to_unicode as UTF-8 */
static int byte_char(int b, char *out) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    int cp = b;
    if (!printable) {
        int extra = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) extra++;
        cp = 256 + extra;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 63));
    return 2;
}

static void json_key(emio_buf *b, const char *s, size_t n) { emio_buf_json_str(b, s, n); }

/* encoder.json: bytes get ids 0..255, merge i gets 256 + i, <|endoftext|> the last id */
static void write_gpt2_fixture(const char *enc_path, const char *bpe_path) {
    emio_buf e = {0}, m = {0};
    emio_buf_puts(&e, "{");
    for (int b = 0; b < 256; b++) {
        char c[2];
        int k = byte_char(b, c);
        if (b) emio_buf_puts(&e, ", ");
        json_key(&e, c, (size_t)k);
        emio_buf_printf(&e, ": %d", b);
    }
    emio_buf_puts(&m, "#version: 0.2\n");
    for (int i = 0; i < N_MERGES; i++) {
        const char *sp = strchr(gpt2_merges[i], ' ');
        char joined[32];
        snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - gpt2_merges[i]), gpt2_merges[i], sp + 1);
        emio_buf_puts(&e, ", ");
        json_key(&e, joined, strlen(joined));
        emio_buf_printf(&e, ": %d", 256 + i);
        emio_buf_printf(&m, "%s\n", gpt2_merges[i]);
    }
    emio_buf_printf(&e, ", \"<|endoftext|>\": %d}", 256 + N_MERGES);
    write_bytes(enc_path, e.p, e.n);
    write_bytes(bpe_path, m.p, m.n);
    free(e.p);
    free(m.p);
}

typedef struct {
    const char *text;
    int n;
    int32_t ids[24];
} enc_case;

static const enc_case gpt2_cases[] = {
    {"Hello world", 3, {274, 111, 275}},
    {" the the", 2, {258, 258}},
    {"aaaaa", 3, {264, 264, 97}},
    {" world", 1, {275}},
    {"I'm here's 12 123", 13, {73, 39, 109, 32, 257, 114, 101, 271, 269, 50, 269, 50, 51}},
    {"  multiple   spaces  ", 19, {32, 32, 109, 117, 108, 116, 105, 112, 108, 101, 272, 32, 115, 112, 97, 99, 101, 115, 272}},
    {"<|endoftext|>the", 3, {278, 116, 257}},
    {"h\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac", 11, {104, 276, 262, 111, 32, 230, 151, 165, 230, 156, 172}},
    {"\n\n\n", 2, {277, 10}},
    {"the<|endoftext|>", 3, {116, 257, 278}},
    {"", 0, {0}},
    {" he", 2, {32, 257}},
    {"wor world", 3, {119, 267, 275}},
};

static void test_gpt2_tokenizer(void) {
    const char *enc = tpath("encoder.json"), *bpe = tpath("vocab.bpe");
    write_gpt2_fixture(enc, bpe);
    em_tokenizer_t *t = em_tokenizer_load_gpt2(enc, bpe);
    TH_CHECK(t != NULL, "load the GPT-2 fixture");
    if (!t) return;
    TH_CHECK(em_tokenizer_kind_of(t) == EM_TOKENIZER_GPT2 && em_tokenizer_vocab_size(t) == 279 && em_tokenizer_bos_id(t) == 278 &&
             em_tokenizer_eos_id(t) == 278, "vocab 279, <|endoftext|> = 278 is BOS and EOS");
    for (int i = 0; i < EM_ARRAY_LEN(gpt2_cases); i++) {
        const enc_case *c = &gpt2_cases[i];
        int32_t *ids;
        size_t n;
        char got[256];
        em_status s = em_tokenizer_encode(t, c->text, strlen(c->text), false, &ids, &n);
        fmt_ids(got, sizeof got, ids, n);
        TH_CHECK(!s && ids_eq(ids, n, c->ids, (size_t)c->n), "encode \"%s\" -> [%s]", c->text, got);
        free(ids);
        TH_CHECK(roundtrip(t, c->text, strlen(c->text), false), "decode(encode(\"%s\"))", c->text);
    }
    int32_t *ids;
    size_t n;
    TH_CHECK(!em_tokenizer_encode(t, "the", 3, true, &ids, &n) && n == 3 && ids[0] == 278 && ids[1] == 116 && ids[2] == 257,
             "bos prepends <|endoftext|>");
    free(ids);
    /* arbitrary bytes (invalid UTF-8 included) round trip */
    bool all = true;
    for (int k = 0; k < 300 && all; k++) {
        char buf[64];
        size_t len = rnd() % 64;
        for (size_t i = 0; i < len; i++) buf[i] = (char)(rnd() % 4 ? " aethl'\n\xc3\xa9\xff"[rnd() % 12] : (char)rnd());
        all = roundtrip(t, buf, len, false);
    }
    TH_CHECK(all, "random bytes round trip");
    /* decode errors */
    int32_t bad[2] = {5, 279};
    TH_CHECK(em_tokenizer_decode(t, bad, 2, NULL) == NULL && em_last_status() == EM_ERR_INDEX && strstr(em_last_error(), "ids[1] = 279"),
             "decode of an out-of-range id: %s", em_last_error());
    TH_CHECK(em_tokenizer_decode_one(t, -1, -3, NULL) == NULL && em_last_status() == EM_ERR_INDEX, "decode_one out of range");
    size_t len;
    const char *p = em_tokenizer_decode_one(t, -1, 258, &len);
    TH_CHECK(p && len == 4 && !memcmp(p, " the", 4), "decode_one(258) = \" the\"");
    TH_CHECK(em_tokenizer_save(t, tpath("gpt2.tok")) == EM_ERR_ARG, "GPT-2 tokenizers are not re-saved");
    TH_CHECK(em_tokenizer_encode(t, NULL, 3, false, &ids, &n) == EM_ERR_ARG, "NULL text");
    TH_CHECK(em_tokenizer_encode(NULL, "a", 1, false, &ids, &n) == EM_ERR_ARG, "NULL tokenizer");
    em_tokenizer_free(t);
}

static void expect_gpt2_error(const char *label, const char *enc, const char *bpe, const char *needle) {
    em_tokenizer_t *t = emio_gpt2_parse(enc, strlen(enc), bpe, strlen(bpe));
    TH_CHECK(!t && em_last_status() == EM_ERR_FORMAT && strstr(em_last_error(), needle), "%s: %s", label, em_last_error());
    em_tokenizer_free(t);
}

static void test_gpt2_errors(void) {
    /* a valid 256-byte encoder plus extra entries */
    emio_buf e = {0};
    emio_buf_puts(&e, "{");
    for (int b = 0; b < 256; b++) {
        char c[2];
        int k = byte_char(b, c);
        json_key(&e, c, (size_t)k);
        emio_buf_printf(&e, ": %d, ", b);
    }
    char enc[8192], enc2[8192];
    snprintf(enc, sizeof enc, "%s\"ab\": 256}", e.p);
    const char *merges = "#version: 0.2\na b\n";
    em_tokenizer_t *t = emio_gpt2_parse(enc, strlen(enc), merges, strlen(merges));
    TH_CHECK(t && em_tokenizer_vocab_size(t) == 257 && em_tokenizer_bos_id(t) == -1, "minimal vocabulary loads (no special token)");
    int32_t *ids;
    size_t n;
    TH_CHECK(t && em_tokenizer_encode(t, "x", 1, true, &ids, &n) == EM_ERR_ARG, "bos without a BOS token is an error");
    em_tokenizer_free(t);
    expect_gpt2_error("bad JSON", "{\"a\": 1", "", "JSON error");
    expect_gpt2_error("not an object", "[1, 2]", "", "one JSON object");
    expect_gpt2_error("too few tokens", "{\"a\": 0}", "", "at least 256");
    snprintf(enc2, sizeof enc2, "%s\"ab\": 300}", e.p);
    expect_gpt2_error("id out of range", enc2, "", "integer in [0, 257)");
    snprintf(enc2, sizeof enc2, "%s\"ab\": 1.5}", e.p);
    expect_gpt2_error("fractional id", enc2, "", "integer in");
    snprintf(enc2, sizeof enc2, "%s\"ab\": \"x\"}", e.p);
    expect_gpt2_error("string id", enc2, "", "integer in");
    snprintf(enc2, sizeof enc2, "%s\"ab\": 5}", e.p);
    expect_gpt2_error("id given twice", enc2, "", "id 5 is given to two tokens");
    snprintf(enc2, sizeof enc2, "%s\"a\": 256}", e.p);
    expect_gpt2_error("token twice", enc2, "", "twice");
    snprintf(enc2, sizeof enc2, "%s\"a b\": 256}", e.p);
    expect_gpt2_error("raw space in a token", enc2, "", "U+0020");
    snprintf(enc2, sizeof enc2, "%s\"\\u4e00\": 256}", e.p);
    expect_gpt2_error("CJK in a token", enc2, "", "U+4E00");
    snprintf(enc2, sizeof enc2, "%s\"\": 256}", e.p);
    expect_gpt2_error("empty token", enc2, "", "empty token");
    /* byte 'a' (id 97) has no token: its id goes to "zz" */
    emio_buf no_a = {0};
    emio_buf_puts(&no_a, "{");
    for (int b = 0; b < 256; b++) {
        char c[2];
        int k = byte_char(b, c);
        if (b == 'a') json_key(&no_a, "zz", 2);
        else json_key(&no_a, c, (size_t)k);
        emio_buf_printf(&no_a, b < 255 ? ": %d, " : ": %d}", b);
    }
    expect_gpt2_error("missing byte", no_a.p, "", "no token for byte 0x61");
    free(no_a.p);
    expect_gpt2_error("merge with three parts", enc, "a b c\n", "line 1");
    expect_gpt2_error("merge without a space", enc, "#version\nab\n", "line 2");
    expect_gpt2_error("merge with two spaces", enc, "a  b\n", "expected");
    expect_gpt2_error("merge of an unknown token", enc, "a bb\n", "the right token is not in encoder.json");
    expect_gpt2_error("merge into an unknown token", enc, "a c\n", "the merged token");
    expect_gpt2_error("repeated merge", enc, "a b\na b\n", "repeats");
    expect_gpt2_error("CRLF merges", enc, "a b\r\n", "U+000D");
    expect_gpt2_error("bad UTF-8 in merges", enc, "a \xff\n", "outside");
    TH_CHECK(em_tokenizer_load_gpt2(tpath("none.json"), tpath("none.bpe")) == NULL && em_last_status() == EM_ERR_IO, "missing files");
    free(e.p);
}

/* ---- llama2.c tokenizer.bin ----------------------------------------------------------------------- */
typedef struct {
    const char *piece;
    float score;
} l2_tok;

static const l2_tok l2_extra[] = {{" ", -1}, {"a", -2}, {"b", -3}, {"c", -4}, {"ab", -5}, {"bc", -1.5f}, {"abc", -0.5f},
                                  {" a", -6}, {"\xc3\xa9", -7}, {" ab", -0.2f}, {"aa", -8}, {"\xc3\xa9\xc3\xa9", -9},
                                  {"h", -10}, {" h", -11}, {"\xc3\xa9" "a", -12}};

/* <unk>, <s>, </s>, 256 byte tokens, then l2_extra: 274 tokens */
static size_t make_l2_tokenizer(char **out) {
    emio_buf b = {0};
    int32_t maxlen = 6;
    emio_buf_put(&b, &maxlen, 4);
    const char *specials[3] = {"<unk>", "\n<s>\n", "\n</s>\n"};
    for (int i = 0; i < 259 + EM_ARRAY_LEN(l2_extra); i++) {
        char piece[16];
        float score = 0;
        if (i < 3) snprintf(piece, sizeof piece, "%s", specials[i]);
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else {
            snprintf(piece, sizeof piece, "%s", l2_extra[i - 259].piece);
            score = l2_extra[i - 259].score;
        }
        int32_t len = (int32_t)strlen(piece);
        emio_buf_put(&b, &score, 4);
        emio_buf_put(&b, &len, 4);
        emio_buf_put(&b, piece, (size_t)len);
    }
    *out = b.p;
    return b.n;
}

typedef struct {
    const char *text;
    size_t len;
    bool bos;
    int n;
    int32_t ids[8];
} l2_case;

static const l2_case l2_cases[] = {
    {"abc", 3, true, 3, {1, 259, 265}},
    {"abc", 3, false, 2, {259, 265}},
    {"ab", 2, true, 2, {1, 268}},
    {"aaa", 3, false, 2, {266, 269}},
    {"\xc3\xa9\xc3\xa9" "a", 5, true, 4, {1, 259, 270, 260}},
    {"x\xc3\xa9", 3, false, 3, {259, 123, 267}},
    {"hello", 5, true, 6, {1, 272, 104, 111, 111, 114}},
    {"", 0, true, 1, {1}},
    {"", 0, false, 0, {0}},
    {"\xff\x80" "a", 3, false, 4, {259, 258, 131, 260}},
    {"\xf0\x9f\x98\x80", 4, false, 5, {259, 243, 162, 155, 131}},
    {"a\xc3\xa9\xc3\xa9\xc3\xa9", 7, false, 3, {266, 270, 267}},
};

static void test_llama2c_tokenizer(void) {
    char *buf;
    size_t n = make_l2_tokenizer(&buf);
    const char *path = tpath("tokenizer.bin");
    write_bytes(path, buf, n);
    em_tokenizer_t *t = em_tokenizer_load_llama2c(path, 274);
    TH_CHECK(t && em_tokenizer_vocab_size(t) == 274 && em_tokenizer_bos_id(t) == 1 && em_tokenizer_eos_id(t) == 2 &&
             em_tokenizer_kind_of(t) == EM_TOKENIZER_LLAMA2C, "load tokenizer.bin");
    if (!t) return;
    em_tokenizer_t *all = em_tokenizer_load_llama2c(path, 0);
    TH_CHECK(all && em_tokenizer_vocab_size(all) == 274, "vocab_size 0 reads every token");
    em_tokenizer_free(all);
    for (int i = 0; i < EM_ARRAY_LEN(l2_cases); i++) {
        const l2_case *c = &l2_cases[i];
        int32_t *ids;
        size_t k;
        char got[256];
        em_status s = em_tokenizer_encode(t, c->text, c->len, c->bos, &ids, &k);
        fmt_ids(got, sizeof got, ids, k);
        TH_CHECK(!s && ids_eq(ids, k, c->ids, (size_t)c->n), "llama2.c encode \"%s\" bos=%d -> [%s]", c->text, c->bos, got);
        free(ids);
        /* with BOS the leading dummy space is dropped again by decode */
        if (c->bos) TH_CHECK(roundtrip(t, c->text, c->len, true), "llama2.c decode(encode(\"%s\"))", c->text);
    }
    /* decode rules */
    size_t len;
    const char *p = em_tokenizer_decode_one(t, 1, 268, &len);
    TH_CHECK(p && len == 2 && !memcmp(p, "ab", 2), "leading space dropped after BOS");
    p = em_tokenizer_decode_one(t, 5, 268, &len);
    TH_CHECK(p && len == 3 && !memcmp(p, " ab", 3), "kept otherwise");
    p = em_tokenizer_decode_one(t, 1, 3 + 0x41, &len);
    TH_CHECK(p && len == 1 && p[0] == 'A', "<0x41> is the byte 'A'");
    p = em_tokenizer_decode_one(t, 1, 3 + 0x0A, &len);
    TH_CHECK(p && len == 1 && p[0] == '\n', "<0x0A> is a newline (not filtered)");
    p = em_tokenizer_decode_one(t, -1, 1, &len);
    TH_CHECK(p && len == 0, "BOS decodes to nothing");
    char *d = em_tokenizer_decode(t, (int32_t[]){1, 268, 261, 2}, 4, &len);
    TH_CHECK(d && len == 3 && !strcmp(d, "abb"), "decode [BOS, ' ab', 'b', EOS] = \"abb\"");
    free(d);
    bool ok = true;
    for (int k = 0; k < 200 && ok; k++) {
        char s[48];
        size_t m = rnd() % 48;
        for (size_t i = 0; i < m; i++) s[i] = (char)(rnd() % 3 ? "abc \xc3\xa9h"[rnd() % 7] : (char)rnd());
        ok = roundtrip(t, s, m, true);
    }
    TH_CHECK(ok, "random bytes round trip with BOS");
    em_tokenizer_free(t);

    /* a vocabulary without byte tokens cannot encode unknown characters */
    em_tokenizer_t *small = emio_llama2c_tok_parse(buf, 4 + 3 * 8 + 5 + 5 + 6 + 10 * (8 + 6), 13);
    int32_t *ids;
    size_t k;
    TH_CHECK(small && em_tokenizer_encode(small, "\xc3\xa9", 2, false, &ids, &k) == EM_ERR_ARG &&
             strstr(em_last_error(), "byte-fallback"), "missing byte-fallback token: %s", em_last_error());
    em_tokenizer_free(small);

    /* loader errors */
    struct {
        const char *label;
        size_t at; /* where to patch */
        int32_t value;
        size_t cut; /* length of the file (0: whole) */
        int32_t vocab;
        const char *needle;
    } bad[] = {
        {"max_token_length 0", 0, 0, 0, 274, "max_token_length 0"},
        {"max_token_length huge", 0, 1 << 30, 0, 274, "max_token_length"},
        {"negative length", 8, -1, 0, 274, "length -1"},
        {"length over max", 8, 7, 0, 274, "length 7"},
        {"length past the end", 4 + 8 + 5 + 8 + 5 + 8 + 6 + 4, 100000, 0, 274, "length"},
        {"truncated in a record", 0, 6, 4 + 8 + 5 + 3, 274, "truncated in token 1"},
        {"truncated text", 0, 6, 4 + 8 + 5 + 8 + 2, 274, "truncated in token 1"},
        {"fewer tokens than vocab_size", 0, 6, 0, 300, "has 274 tokens"},
        {"trailing bytes", 0, 6, 0, 200, "follow the 200 tokens"},
        {"NaN score", 4, 0x7fc00000, 0, 274, "non-finite"},
        {"empty file", 0, 6, 2, 274, "too short"},
    };
    for (int i = 0; i < EM_ARRAY_LEN(bad); i++) {
        char *c = malloc(n);
        memcpy(c, buf, n);
        memcpy(c + bad[i].at, &bad[i].value, 4);
        em_tokenizer_t *x = emio_llama2c_tok_parse(c, bad[i].cut ? bad[i].cut : n, bad[i].vocab);
        TH_CHECK(!x && em_last_status() == EM_ERR_FORMAT && strstr(em_last_error(), bad[i].needle), "%s: %s", bad[i].label, em_last_error());
        em_tokenizer_free(x);
        free(c);
    }
    TH_CHECK(emio_llama2c_tok_parse(buf, 4, 0) == NULL && strstr(em_last_error(), "no tokens"), "no tokens");
    TH_CHECK(emio_llama2c_tok_parse(buf, n, -5) == NULL && em_last_status() == EM_ERR_ARG, "negative vocab_size");
    TH_CHECK(em_tokenizer_load_llama2c(tpath("none.bin"), 0) == NULL && em_last_status() == EM_ERR_IO, "missing file");
    free(buf);
}

/* ---- trained BPE ------------------------------------------------------------------------------------ */
static const char *corpus =
    "the cat sat on the mat. the cat ate the rat. that cat, the fat cat, sat on that mat!\n"
    "<|endoftext|>A second document: caf\xc3\xa9 caf\xc3\xa9 na\xc3\xafve na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xe6\x97\xa5\xe6\x9c\xac 12 12 123\n";

static void test_bpe_trainer(void) {
    em_tokenizer_t *t = em_tokenizer_train_bpe(corpus, strlen(corpus), 300);
    TH_CHECK(t && em_tokenizer_kind_of(t) == EM_TOKENIZER_BPE, "train");
    if (!t) return;
    int32_t V = em_tokenizer_vocab_size(t);
    TH_CHECK(V > 257 && V <= 300 && em_tokenizer_bos_id(t) == V - 1 && em_tokenizer_eos_id(t) == V - 1, "vocab %d in (257, 300]", V);
    size_t len;
    const char *p = em_tokenizer_decode_one(t, -1, 256, &len);
    TH_CHECK(p && len == 2 && !memcmp(p, "at", 2), "the first merge is the most frequent pair, \"at\" (got \"%.*s\")", (int)len, p);
    p = em_tokenizer_decode_one(t, -1, V - 1, &len);
    TH_CHECK(p && len == 13 && !memcmp(p, "<|endoftext|>", 13), "last id is <|endoftext|>");
    int32_t *ids;
    size_t n;
    TH_CHECK(!em_tokenizer_encode(t, corpus, strlen(corpus), false, &ids, &n) && n < strlen(corpus) / 2, "compresses its corpus (%zu ids)", n);
    bool special = false;
    for (size_t i = 0; i < n; i++) special |= ids[i] == V - 1;
    TH_CHECK(special, "literal <|endoftext|> is the special id");
    free(ids);
    TH_CHECK(roundtrip(t, corpus, strlen(corpus), false), "corpus round trip");
    bool ok = true;
    for (int k = 0; k < 200 && ok; k++) {
        char s[64];
        size_t m = rnd() % 64;
        for (size_t i = 0; i < m; i++) s[i] = (char)(rnd() % 3 ? "the cat\n\xc3\xa9"[rnd() % 9] : (char)rnd());
        ok = roundtrip(t, s, m, false);
    }
    TH_CHECK(ok, "random bytes round trip");
    /* deterministic, and save/load keeps it exactly */
    em_tokenizer_t *t2 = em_tokenizer_train_bpe(corpus, strlen(corpus), 300);
    const char *path = tpath("bpe.tok");
    TH_CHECK(!em_tokenizer_save(t, path), "save");
    em_tokenizer_t *t3 = em_tokenizer_load(path);
    TH_CHECK(t2 && t3 && em_tokenizer_vocab_size(t3) == V, "load");
    int32_t *a, *b, *c;
    size_t na, nb, nc;
    em_tokenizer_encode(t, corpus, strlen(corpus), true, &a, &na);
    em_tokenizer_encode(t2, corpus, strlen(corpus), true, &b, &nb);
    em_tokenizer_encode(t3, corpus, strlen(corpus), true, &c, &nc);
    TH_CHECK(ids_eq(a, na, b, nb) && ids_eq(a, na, c, nc) && a[0] == V - 1, "same ids from a retrained and a reloaded tokenizer");
    free(a); free(b); free(c);
    /* the saved file's errors */
    emio_buf f = {0};
    emio_tokenizer_serialize(t, &f);
    struct {
        const char *label;
        size_t at;
        int32_t value;
        size_t cut;
        const char *needle;
    } bad[] = {
        {"bad magic", 0, 0x41414141, 0, "not an Ember tokenizer"},
        {"bad version", 8, 2, 0, "version 2"},
        {"bad kind", 12, 7, 0, "unknown tokenizer kind 7"},
        {"count too big", 16, 1000, 0, "1000 merges"},
        {"truncated", 0, 0x45424d45, 30, "merges need"},
        {"header only", 0, 0x45424d45, 12, "shorter than the 20-byte header"},
        {"future id", 20, 256, 0, "only ids below 256"},
        {"negative id", 24, -1, 0, "merge 0 joins"},
        {"repeated pair", 28, 0, 0, "repeats"},
    };
    for (int i = 0; i < EM_ARRAY_LEN(bad); i++) {
        char *x = malloc(f.n);
        memcpy(x, f.p, f.n);
        if (bad[i].at || bad[i].value != 0x45424d45) memcpy(x + bad[i].at, &bad[i].value, 4);
        if (!strcmp(bad[i].label, "repeated pair")) memcpy(x + 28, x + 20, 8); /* merge 1 = merge 0 */
        em_tokenizer_t *y = emio_tokenizer_parse(x, bad[i].cut ? bad[i].cut : f.n);
        TH_CHECK(!y && em_last_status() == EM_ERR_FORMAT && strstr(em_last_error(), bad[i].needle), "%s: %s", bad[i].label, em_last_error());
        em_tokenizer_free(y);
        free(x);
    }
    /* pieces that double in length forever are refused */
    int32_t chain[2 * 40];
    chain[0] = 'a';
    chain[1] = 'a';
    for (int i = 1; i < 40; i++) chain[2 * i] = chain[2 * i + 1] = 256 + i - 1;
    em_tokenizer_t *y = emio_bpe_from_merges(chain, 40, "test");
    TH_CHECK(!y && strstr(em_last_error(), "too long"), "exponential pieces: %s", em_last_error());
    free(f.p);
    TH_CHECK(em_tokenizer_train_bpe(corpus, strlen(corpus), 256) == NULL && em_last_status() == EM_ERR_ARG, "vocab_size 256 is too small");
    em_tokenizer_t *tiny = em_tokenizer_train_bpe("", 0, 1000);
    TH_CHECK(tiny && em_tokenizer_vocab_size(tiny) == 257, "empty text: bytes and the special token only");
    em_tokenizer_free(tiny);
    em_tokenizer_free(t);
    em_tokenizer_free(t2);
    em_tokenizer_free(t3);
}

/* ---- char tokenizer --------------------------------------------------------------------------------- */
static void test_char_tokenizer(void) {
    em_tokenizer_t *t = em_tokenizer_char("hello world", 11);
    TH_CHECK(t && em_tokenizer_vocab_size(t) == 9 && em_tokenizer_bos_id(t) == 8, "8 characters + <|endoftext|>");
    if (!t) return;
    int32_t *ids;
    size_t n;
    TH_CHECK(!em_tokenizer_encode(t, "hello", 5, true, &ids, &n) && ids_eq(ids, n, (int32_t[]){8, 3, 2, 4, 4, 5}, 6),
             "sorted ids: ' '=0 d=1 e=2 h=3 l=4 o=5 r=6 w=7");
    free(ids);
    TH_CHECK(em_tokenizer_encode(t, "help", 4, false, &ids, &n) == EM_ERR_ARG && strstr(em_last_error(), "U+0070 ('p') at byte 3"),
             "unknown character: %s", em_last_error());
    TH_CHECK(em_tokenizer_encode(t, "<|endoftext|>", 13, false, &ids, &n) == EM_ERR_ARG, "the special token is not text");
    em_tokenizer_free(t);
    /* code points, not bytes; invalid bytes are units of their own */
    const char *text = "na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xff\xc3 z";
    t = em_tokenizer_char(text, strlen(text));
    TH_CHECK(t && em_tokenizer_vocab_size(t) == 13, "units: ' ' a e n v z \xc3\xaf \xe6\x97\xa5 \xe6\x9c\xac \xf0\x9f\x98\x80 \\xc3 \\xff + special (%d)",
             t ? em_tokenizer_vocab_size(t) : -1);
    TH_CHECK(roundtrip(t, text, strlen(text), false), "round trip with invalid bytes");
    size_t len;
    const char *p = em_tokenizer_decode_one(t, -1, 6, &len);
    TH_CHECK(p && len == 1 && (uint8_t)p[0] == 0xc3, "a lone 0xC3 sorts before U+00EF (0xC3 0xAF)");
    const char *path = tpath("char.tok");
    TH_CHECK(!em_tokenizer_save(t, path), "save");
    em_tokenizer_t *t2 = em_tokenizer_load(path);
    TH_CHECK(t2 && em_tokenizer_kind_of(t2) == EM_TOKENIZER_CHAR && roundtrip(t2, text, strlen(text), false), "load");
    emio_buf f = {0};
    emio_tokenizer_serialize(t, &f);
    /* units: 20: u8 len, bytes ... first units are ' ' (1) 'a' (1) */
    char *x = malloc(f.n);
    memcpy(x, f.p, f.n);
    x[23] = ' '; /* 'a' -> ' ': not increasing */
    TH_CHECK(!emio_tokenizer_parse(x, f.n) && strstr(em_last_error(), "increasing"), "unsorted units: %s", em_last_error());
    memcpy(x, f.p, f.n);
    x[20] = 5;
    TH_CHECK(!emio_tokenizer_parse(x, f.n) && strstr(em_last_error(), "length 5"), "unit length 5: %s", em_last_error());
    memcpy(x, f.p, f.n);
    TH_CHECK(!emio_tokenizer_parse(x, f.n - 1), "truncated char file: %s", em_last_error());
    char two[24] = "EMBERTOK\x01\0\0\0\x03\0\0\0\x01\0\0\0\x02\xc3\x28";
    TH_CHECK(!emio_tokenizer_parse(two, 23) && strstr(em_last_error(), "not one UTF-8 character"), "invalid 2-byte unit: %s", em_last_error());
    TH_CHECK(em_tokenizer_load(tpath("none.tok")) == NULL && em_last_status() == EM_ERR_IO, "missing file");
    free(x);
    free(f.p);
    em_tokenizer_free(t);
    em_tokenizer_free(t2);
    em_tokenizer_t *empty = em_tokenizer_char("", 0);
    TH_CHECK(empty && em_tokenizer_vocab_size(empty) == 1, "empty text: only the special token");
    em_tokenizer_free(empty);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ember_test_tok_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_gpt2_split();
    test_gpt2_tokenizer();
    test_gpt2_errors();
    test_llama2c_tokenizer();
    test_bpe_trainer();
    test_char_tokenizer();
    for (int i = 0; i < npaths; i++) unlink(paths[i]);
    rmdir(tmpdir);
    return th_summary();
}

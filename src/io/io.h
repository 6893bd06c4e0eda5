/* io.h - what the files of src/io/ share: reading whole files and writing them atomically, a
 * small JSON reader, hash maps keyed by byte strings and by id pairs, UTF-8 and Unicode
 * classes, GPT-2's pre-tokenizer, the byte-level BPE engine, and the tokenizer struct behind
 * the opaque em_tokenizer_t.
 *
 * Every loader here parses from memory (a whole file read in, or a buffer a fuzz target
 * hands over) through the same validating code, so a fuzz target exercises exactly what a
 * user's file goes through. Big tensor payloads (safetensors, llama2.c) are the exception:
 * the header is parsed from memory and the payload is copied straight from the file (or the
 * buffer) into fresh tensors, through an emio_src.
 *
 * Ember assumes a little-endian host, like the formats it reads.
 */
#ifndef EMBER_IO_H
#define EMBER_IO_H

#include "../tensor/tensor.h"

#include <stdio.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "src/io assumes a little-endian host (safetensors and llama2.c files are little-endian)"
#endif

/* ---- files (file.c) ------------------------------------------------------------------------ */
/* reads a whole regular file of at most max_bytes into a malloc'ed buffer (NUL-terminated, *n
   excludes the NUL); errors name op and path */
em_status emio_read_file(const char *op, const char *path, size_t max_bytes, char **buf, size_t *n);

/* a byte source: a FILE (big payloads) or a memory buffer (fuzz targets, tests) */
typedef struct {
    FILE *f;
    const uint8_t *mem;
    uint64_t size, pos; /* size of the whole file or buffer; current position */
    const char *op, *path;
} emio_src;
em_status emio_src_open(emio_src *s, const char *op, const char *path);   /* regular files only */
void      emio_src_mem(emio_src *s, const char *op, const void *buf, size_t n);
void      emio_src_close(emio_src *s);
/* exactly n bytes or EM_ERR_FORMAT ("truncated") / EM_ERR_IO */
em_status emio_src_read(emio_src *s, void *dst, uint64_t n, const char *what);
em_status emio_src_seek(emio_src *s, uint64_t pos);

/* atomic write: fn writes the content to f; the file goes to "<path>.tmp.<pid>", is flushed,
   fsync'ed and renamed over path. On any failure the temp file is removed and path is left as
   it was. fn returns EM_OK or an error it has set. */
typedef em_status (*emio_write_fn)(FILE *f, void *ctx);
em_status emio_write_atomic(const char *op, const char *path, emio_write_fn fn, void *ctx);
/* fwrite that reports a failure as EM_ERR_IO naming op */
em_status emio_fwrite(FILE *f, const void *p, size_t n, const char *op);

/* a growable byte buffer (for building headers and for writing to memory) */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} emio_buf;
void emio_buf_put(emio_buf *b, const void *p, size_t n);
void emio_buf_puts(emio_buf *b, const char *s);
void emio_buf_printf(emio_buf *b, const char *fmt, ...) EM_PRINTF(2, 3);
void emio_buf_json_str(emio_buf *b, const char *s, size_t n); /* a quoted, escaped JSON string */

/* ---- hashing (file.c) ------------------------------------------------------------------------ */
uint64_t emio_hash(const void *p, size_t n);

/* byte string -> int32 value; keys are borrowed (the owner keeps them alive) */
typedef struct {
    const char **keys;
    uint32_t *lens;
    int32_t *vals;
    size_t cap, n; /* cap is a power of two, or 0 */
} emio_strmap;
/* inserts key -> val; when the key is present already, leaves it and returns false. Sets
   *oom on allocation failure. */
bool    emio_strmap_put(emio_strmap *m, const char *key, size_t len, int32_t val, bool *oom);
int32_t emio_strmap_get(const emio_strmap *m, const char *key, size_t len); /* -1 when absent */
void    emio_strmap_free(emio_strmap *m);

/* (a, b) id pair -> (rank, id of the merged token): a BPE merge table */
typedef struct {
    uint64_t *keys; /* (a << 32 | b) + 1; 0 marks an empty slot */
    int32_t *rank, *id;
    size_t cap, n;
} emio_pairmap;
bool emio_pairmap_put(emio_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id, bool *oom);
bool emio_pairmap_get(const emio_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);
void emio_pairmap_free(emio_pairmap *m);

/* a binary min-heap of candidate merges for BPE encoders: the smallest key first (a merge rank,
   or a negated score), ties broken by the left position; lid/rid are the symbol ids when pushed
   (an entry is stale once they changed), merged the resulting id where the caller stores it */
typedef struct { double key; int32_t left, right, lid, rid, merged; } emio_merge;
typedef struct { emio_merge *e; size_t n, cap; } emio_heap;
bool       emio_heap_push(emio_heap *h, emio_merge x); /* false when out of memory */
emio_merge emio_heap_pop(emio_heap *h);                /* h must be non-empty */

/* ---- JSON (json.c) -------------------------------------------------------------------------- */
typedef enum { EMJ_NULL, EMJ_FALSE, EMJ_TRUE, EMJ_NUM, EMJ_STR, EMJ_ARR, EMJ_OBJ } emj_type;
typedef struct {
    emj_type type;
    bool is_int;         /* EMJ_NUM: an integer literal that fits int64 (no fraction, no exponent) */
    int64_t i;           /* its value */
    size_t str, len;     /* EMJ_STR: offset of the decoded UTF-8 in doc->strs, byte length */
    size_t key, klen;    /* members of an object: the key, same encoding */
    int64_t first, next; /* EMJ_ARR/EMJ_OBJ: first child; every node: next sibling (-1 ends) */
    int64_t n;           /* EMJ_ARR/EMJ_OBJ: number of children */
} emj_node;
typedef struct {
    emj_node *nodes; /* nodes[0] is the root */
    int64_t n, cap;
    char *strs;      /* every string, decoded, each followed by a NUL */
    size_t slen, scap;
    int64_t max_nodes;
} emj_doc;
#define EMJ_MAX_DEPTH 64
/* strict RFC 8259: UTF-8 checked, no duplicate-key check (callers hash keys themselves),
   nesting at most EMJ_MAX_DEPTH, at most max_nodes values (bounds the memory a hostile file can
   make it use). Errors are EM_ERR_FORMAT "<what>: JSON error at byte N: ..." */
em_status emj_parse(emj_doc *doc, const char *text, size_t len, const char *what, int64_t max_nodes);
void      emj_free(emj_doc *doc);
static inline const char *emj_str(const emj_doc *d, const emj_node *n) { return d->strs + n->str; }
static inline const char *emj_key(const emj_doc *d, const emj_node *n) { return d->strs + n->key; }

/* ---- UTF-8 and Unicode classes (unicode_tables.c, pretokenize.c) ----------------------------- */
/* decodes one code point at s[0..n) (n >= 1): its length in bytes, or 0 when the bytes there are
   not valid UTF-8 (overlong, surrogate, > U+10FFFF, truncated); *cp is set when valid */
int  emio_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
bool emio_is_letter(uint32_t cp); /* General_Category L* */
bool emio_is_number(uint32_t cp); /* General_Category N* */
bool emio_is_space(uint32_t cp);  /* the White_Space property (what regex's \s matches) */
/* generated tables (unicode_tables.c): sorted, disjoint, inclusive [lo, hi] ranges */
extern const uint32_t emio_letter_ranges[][2], emio_number_ranges[][2];
extern const int emio_n_letter_ranges, emio_n_number_ranges;

/* GPT-2's pre-tokenization: calls fn(ctx, start, end) for each piece of s[0..n), in order, as
   regex.findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
   would; bytes that are not valid UTF-8 count as one "other" character each. */
typedef em_status (*emio_piece_fn)(void *ctx, size_t start, size_t end);
em_status emio_gpt2_split(const uint8_t *s, size_t n, emio_piece_fn fn, void *ctx);

/* ---- tokenizers ------------------------------------------------------------------------------ */
#define EMIO_ENDOFTEXT "<|endoftext|>"

struct em_tokenizer {
    em_tokenizer_kind kind;
    int32_t n_vocab;
    /* id -> piece bytes: blob[off[i] .. off[i] + len[i]) */
    char *blob;
    int64_t *off;
    int32_t *len;
    emio_strmap map;     /* piece -> lowest id with that piece */
    int32_t bos, eos;    /* -1 when the tokenizer has none */
    int32_t special;     /* id recognised when its piece appears literally in text, or -1 */
    /* byte-level BPE (GPT-2 and trained) */
    int32_t byte_id[256]; /* the token of each single byte */
    emio_pairmap merges;
    int32_t n_merges;
    int32_t *merge_pairs; /* (a, b) per rank, for saving a trained tokenizer */
    /* llama2.c */
    float *scores;
    int32_t max_token_length;
    int16_t *byte_of;     /* 0..255 when the piece is "<0xXX>", else -1 */
    char raw[256];        /* raw[b] == b: what decode_one points into for byte pieces */
};

/* the pieces table: tok->blob/off/len/map from n pieces (fails on OOM, or past 256 MiB of pieces) */
em_status emio_tok_set_pieces(em_tokenizer_t *tok, const char *const *pieces, const size_t *lens, int32_t n);
em_tokenizer_t *emio_tok_new(em_tokenizer_kind kind);
/* BPE on one pre-tokenized piece: appends its ids to *out (grows it); bpe.c */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} emio_ids;
bool      emio_ids_push(emio_ids *v, int32_t id);
em_status emio_bpe_word(const em_tokenizer_t *tok, const uint8_t *s, size_t n, emio_ids *out);
/* byte-level BPE encode of a whole text: split at the special token, pre-tokenize, merge */
em_status emio_bpe_encode(const em_tokenizer_t *tok, const uint8_t *s, size_t n, emio_ids *out);

/* from memory; what the em_tokenizer_load_* functions and the fuzz targets call */
em_tokenizer_t *emio_gpt2_parse(const char *enc, size_t enc_n, const char *bpe, size_t bpe_n);
em_tokenizer_t *emio_llama2c_tok_parse(const void *buf, size_t n, int32_t vocab_size);
em_tokenizer_t *emio_tokenizer_parse(const void *buf, size_t n); /* em_tokenizer_save's format */
/* em_tokenizer_save's format into memory */
em_status emio_tokenizer_serialize(const em_tokenizer_t *tok, emio_buf *out);
em_status emio_llama2c_tok_encode(const em_tokenizer_t *tok, const uint8_t *s, size_t n, bool bos, emio_ids *out);
em_status emio_char_encode(const em_tokenizer_t *tok, const uint8_t *s, size_t n, emio_ids *out);
/* a tokenizer from the merges (a, b) per rank; used by the trainer and by the loader */
em_tokenizer_t *emio_bpe_from_merges(const int32_t *pairs, int32_t n_merges, const char *op);
/* a char tokenizer from its sorted units */
em_tokenizer_t *emio_char_from_units(const char *const *units, const size_t *lens, int32_t n, const char *op);

/* ---- checkpoints from memory (fuzz targets, tests) ------------------------------------------- */
em_status emio_safetensors_load_mem(const void *buf, size_t n, em_state_dict_t **out);
em_status emio_safetensors_serialize(const em_state_dict_t *sd, emio_buf *out);
em_status emio_llama2c_load_mem(const void *buf, size_t n, em_llama2c_config *cfg, em_state_dict_t **out);

#endif

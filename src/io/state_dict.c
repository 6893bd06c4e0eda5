/* state_dict.c - the named-tensor container that checkpoints, models and optimizers exchange.
 *
 * An ordered map name -> tensor (insertion order, which is the order files are written in and
 * the order a model registers its parameters) plus ordered string metadata, like a PyTorch
 * state_dict with the safetensors "__metadata__" attached. The dict owns one reference to each
 * tensor it holds and never sits in a scope; getters hand out new references owned by the
 * innermost scope, as every em_ call does. Names are hashed, so a hostile checkpoint with a
 * million entries cannot make duplicate checks quadratic.
 */
#include "io.h"

#define MAX_NAME (1 << 20)

typedef struct {
    char **keys;
    size_t *klens;
    void **vals;   /* em_tensor_t* or char* (metadata values) */
    int64_t n, cap;
    emio_strmap map;
} table;

struct em_state_dict {
    table t; /* tensors */
    table m; /* metadata */
};

static int64_t find(const table *t, const char *k) {
    size_t n = strlen(k);
    return n > MAX_NAME ? -1 : emio_strmap_get(&t->map, k, n);
}

static em_status rebuild(table *t) {
    emio_strmap_free(&t->map);
    bool oom = false;
    for (int64_t i = 0; i < t->n && !oom; i++) emio_strmap_put(&t->map, t->keys[i], t->klens[i], (int32_t)i, &oom);
    return oom ? em_seterr(EM_ERR_OOM, "state dict: out of memory") : EM_OK;
}

/* appends (k, v) (k copied); v's ownership passes to the table only on success */
static em_status append(table *t, const char *k, void *v) {
    if (t->n >= INT32_MAX - 1) return em_seterr(EM_ERR_ARG, "state dict: too many entries");
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 16;
        char **keys = realloc(t->keys, (size_t)cap * sizeof *keys);
        if (keys) t->keys = keys;
        size_t *klens = realloc(t->klens, (size_t)cap * sizeof *klens);
        if (klens) t->klens = klens;
        void **vals = realloc(t->vals, (size_t)cap * sizeof *vals);
        if (vals) t->vals = vals;
        if (!keys || !klens || !vals) return em_seterr(EM_ERR_OOM, "state dict: out of memory");
        t->cap = cap;
    }
    size_t kl = strlen(k);
    if (kl > MAX_NAME) return em_seterr(EM_ERR_ARG, "state dict: a name of %zu bytes is too long (at most %d)", kl, MAX_NAME);
    char *kc = malloc(kl + 1);
    if (!kc) return em_seterr(EM_ERR_OOM, "state dict: out of memory");
    memcpy(kc, k, kl + 1);
    bool oom = false;
    if (!emio_strmap_put(&t->map, kc, kl, (int32_t)t->n, &oom)) {
        free(kc);
        return em_seterr(oom ? EM_ERR_OOM : EM_ERR_ARG, "state dict: %s", oom ? "out of memory" : "duplicate name");
    }
    t->keys[t->n] = kc;
    t->klens[t->n] = kl;
    t->vals[t->n] = v;
    t->n++;
    return EM_OK;
}

static void remove_at(table *t, int64_t i) {
    free(t->keys[i]);
    memmove(t->keys + i, t->keys + i + 1, (size_t)(t->n - i - 1) * sizeof *t->keys);
    memmove(t->klens + i, t->klens + i + 1, (size_t)(t->n - i - 1) * sizeof *t->klens);
    memmove(t->vals + i, t->vals + i + 1, (size_t)(t->n - i - 1) * sizeof *t->vals);
    t->n--;
}

static void table_free(table *t, bool tensors) {
    for (int64_t i = 0; i < t->n; i++) {
        free(t->keys[i]);
        if (tensors) em_release(t->vals[i]);
        else free(t->vals[i]);
    }
    free(t->keys);
    free(t->klens);
    free(t->vals);
    emio_strmap_free(&t->map);
}

em_state_dict_t *em_state_dict_new(void) {
    em_state_dict_t *sd = calloc(1, sizeof *sd);
    if (!sd) return em_seterr_null(EM_ERR_OOM, "em_state_dict_new: out of memory");
    return sd;
}

void em_state_dict_free(em_state_dict_t *sd) {
    if (!sd) return;
    table_free(&sd->t, true);
    table_free(&sd->m, false);
    free(sd);
}

em_status em_state_dict_set(em_state_dict_t *sd, const char *name, em_tensor_t *t) {
    static const char *op = "em_state_dict_set";
    if (!sd) return em_seterr(EM_ERR_ARG, "%s: state dict is NULL", op);
    if (!name || !name[0]) return em_seterr(EM_ERR_ARG, "%s: name is NULL or empty", op);
    if (!emt_check(t, op, "t")) return em_last_status();
    int64_t i = find(&sd->t, name);
    if (i >= 0) {
        em_retain(t);
        em_release(sd->t.vals[i]);
        sd->t.vals[i] = t;
        return EM_OK;
    }
    em_retain(t);
    em_status s = append(&sd->t, name, t);
    if (s) em_release(t);
    return s;
}

static void list_names(const em_state_dict_t *sd, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    for (int64_t i = 0; i < sd->t.n && at + 8 < cap; i++) {
        int k = snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", sd->t.keys[i]);
        if (k < 0) break;
        at += (size_t)k;
    }
    if (at + 8 >= cap && cap > 8) snprintf(buf + cap - 8, 8, ", ...");
}

em_tensor_t *em_state_dict_get(const em_state_dict_t *sd, const char *name) {
    static const char *op = "em_state_dict_get";
    if (!sd) return em_seterr_null(EM_ERR_ARG, "%s: state dict is NULL", op);
    if (!name) return em_seterr_null(EM_ERR_ARG, "%s: name is NULL", op);
    int64_t i = find(&sd->t, name);
    if (i < 0) {
        char names[400];
        list_names(sd, names, sizeof names);
        return em_seterr_null(EM_ERR_ARG, "%s: no tensor named '%s' (the dict has %lld: %s)", op, name,
                              (long long)sd->t.n, names);
    }
    em_tensor_t *t = sd->t.vals[i];
    t->refcount++;
    return emt_own(t);
}

bool em_state_dict_contains(const em_state_dict_t *sd, const char *name) {
    return sd && name && find(&sd->t, name) >= 0;
}

em_status em_state_dict_remove(em_state_dict_t *sd, const char *name) {
    if (!sd || !name) return em_seterr(EM_ERR_ARG, "em_state_dict_remove: state dict or name is NULL");
    int64_t i = find(&sd->t, name);
    if (i < 0) return em_seterr(EM_ERR_ARG, "em_state_dict_remove: no tensor named '%s'", name);
    em_release(sd->t.vals[i]);
    remove_at(&sd->t, i);
    return rebuild(&sd->t);
}

int64_t em_state_dict_count(const em_state_dict_t *sd) {
    if (!sd) { em_seterr(EM_ERR_ARG, "em_state_dict_count: state dict is NULL"); return -1; }
    return sd->t.n;
}

const char *em_state_dict_name_at(const em_state_dict_t *sd, int64_t i) {
    if (!sd) return em_seterr_null(EM_ERR_ARG, "em_state_dict_name_at: state dict is NULL");
    if (i < 0 || i >= sd->t.n)
        return em_seterr_null(EM_ERR_INDEX, "em_state_dict_name_at: index %lld out of range [0, %lld)", (long long)i, (long long)sd->t.n);
    return sd->t.keys[i];
}

em_tensor_t *em_state_dict_tensor_at(const em_state_dict_t *sd, int64_t i) {
    if (!sd) return em_seterr_null(EM_ERR_ARG, "em_state_dict_tensor_at: state dict is NULL");
    if (i < 0 || i >= sd->t.n)
        return em_seterr_null(EM_ERR_INDEX, "em_state_dict_tensor_at: index %lld out of range [0, %lld)", (long long)i, (long long)sd->t.n);
    em_tensor_t *t = sd->t.vals[i];
    t->refcount++;
    return emt_own(t);
}

em_status em_state_dict_set_meta(em_state_dict_t *sd, const char *key, const char *value) {
    static const char *op = "em_state_dict_set_meta";
    if (!sd || !key || !value) return em_seterr(EM_ERR_ARG, "%s: state dict, key and value must not be NULL", op);
    if (!key[0]) return em_seterr(EM_ERR_ARG, "%s: key is empty", op);
    size_t vl = strlen(value);
    char *v = malloc(vl + 1);
    if (!v) return em_seterr(EM_ERR_OOM, "%s: out of memory", op);
    memcpy(v, value, vl + 1);
    int64_t i = find(&sd->m, key);
    if (i >= 0) {
        free(sd->m.vals[i]);
        sd->m.vals[i] = v;
        return EM_OK;
    }
    em_status s = append(&sd->m, key, v);
    if (s) free(v);
    return s;
}

const char *em_state_dict_meta(const em_state_dict_t *sd, const char *key) {
    if (!sd || !key) return em_seterr_null(EM_ERR_ARG, "em_state_dict_meta: state dict or key is NULL");
    int64_t i = find(&sd->m, key);
    return i >= 0 ? sd->m.vals[i] : NULL;
}

int64_t em_state_dict_meta_count(const em_state_dict_t *sd) {
    if (!sd) { em_seterr(EM_ERR_ARG, "em_state_dict_meta_count: state dict is NULL"); return -1; }
    return sd->m.n;
}

const char *em_state_dict_meta_key_at(const em_state_dict_t *sd, int64_t i) {
    if (!sd) return em_seterr_null(EM_ERR_ARG, "em_state_dict_meta_key_at: state dict is NULL");
    if (i < 0 || i >= sd->m.n)
        return em_seterr_null(EM_ERR_INDEX, "em_state_dict_meta_key_at: index %lld out of range [0, %lld)", (long long)i, (long long)sd->m.n);
    return sd->m.keys[i];
}

/* loopir.c - the loop-level IR's expressions: a hash-consed pool, the simplifier, rewriting and
 * the `ops` walk that backends print through.
 *
 * needs: nothing (the bottom of src/compiler). fills: emc_pool for lower/schedule/codegen.
 *
 * Every node is interned: building a node that already exists returns the old id, so structural
 * equality is id equality, common subexpressions are shared for free and a fused loop body is a
 * DAG that each backend emits once per node. Index arithmetic is kept in one canonical form, a
 * constant plus coefficient * term sums (EMX_AFF) whose terms are loop variables, floor
 * divisions and modulos by constants, clamps or data-dependent indices. A few rules, driven by
 * value ranges (every I64 node knows its [lo, hi]), keep the views' index algebra affine
 * (tinygrad's symbolic, in miniature):
 *   x / k, x % k         with 0 <= x < k          ->  0, x
 *   (k q + r) / k        with r >= 0              ->  q + r / k
 *   (g b + s) / (g k')   with 0 <= s < g          ->  b / k'          (likewise for %)
 *   c n (A / n) + c (A % n)                        ->  c A            (a reshape undone)
 * so a reshape of a contiguous or transposed buffer folds back into plain strides, and two loop
 * dims that every index walks as one collapse into one loop (schedule.c). Division and modulo
 * follow C (truncation); they are only simplified where their argument is known non-negative.
 */
#include "compiler.h"

#include <math.h>
#include <stdio.h>

#define RMIN INT64_MIN
#define RMAX INT64_MAX
#define AFF_MAX 64

/* ---- types ------------------------------------------------------------------------------------ */
emc_ty emc_ctype(em_dtype d) {
    switch (d) {
    case EM_F64: return EMC_F64;
    case EM_F32: case EM_F16: case EM_BF16: return EMC_F32;
    case EM_BOOL: return EMC_BOOL;
    default: return EMC_I64;
    }
}

em_dtype emc_ty_dtype(emc_ty t) {
    switch (t) {
    case EMC_F64: return EM_F64;
    case EMC_F32: return EM_F32;
    case EMC_BOOL: return EM_BOOL;
    default: return EM_I64;
    }
}

bool emc_is_float_ty(emc_ty t) { return t == EMC_F32 || t == EMC_F64; }

/* ---- the pool ----------------------------------------------------------------------------------- */
void emc_pool_init(emc_pool *p) { memset(p, 0, sizeof *p); }

void emc_pool_free(emc_pool *p) {
    free(p->mark);
    free(p->x);
    free(p->argv);
    free(p->coefv);
    free(p->tab);
    memset(p, 0, sizeof *p);
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v;
    h *= 0x100000001b3ull;
    h ^= h >> 29;
    return h;
}

static uint64_t hash_of(const emc_x *t, const int *args, const int64_t *coefs) {
    uint64_t h = 0xcbf29ce484222325ull, fb;
    memcpy(&fb, &t->f, 8);
    h = mix(h, (uint64_t)t->kind | (uint64_t)t->ty << 8 | (uint64_t)(uint16_t)t->op << 16 | (uint64_t)t->n << 32);
    h = mix(h, (uint64_t)t->i);
    h = mix(h, (uint64_t)t->aux);
    h = mix(h, fb);
    for (int k = 0; k < t->n; k++) {
        h = mix(h, (uint64_t)args[k]);
        if (coefs) h = mix(h, (uint64_t)coefs[k]);
    }
    return h;
}

static bool same(const emc_pool *p, int id, const emc_x *t, const int *args, const int64_t *coefs) {
    const emc_x *x = &p->x[id];
    if (x->hash != t->hash || x->kind != t->kind || x->ty != t->ty || x->op != t->op || x->n != t->n ||
        x->i != t->i || x->aux != t->aux || memcmp(&x->f, &t->f, sizeof x->f) != 0)
        return false;
    for (int k = 0; k < t->n; k++) {
        if (p->argv[x->a + k] != args[k]) return false;
        if (coefs && p->coefv[x->a + k] != coefs[k]) return false;
    }
    return true;
}

static bool oom(emc_pool *p) {
    if (!p->oom) em_seterr(EM_ERR_OOM, "compiler: out of memory building expressions");
    p->oom = true;
    return false;
}

static bool rehash(emc_pool *p) {
    int cap = p->captab ? p->captab * 2 : 1024;
    int *tab = malloc(sizeof(int) * (size_t)cap);
    if (!tab) return oom(p);
    for (int k = 0; k < cap; k++) tab[k] = -1;
    for (int id = 0; id < p->nx; id++) {
        size_t s = (size_t)p->x[id].hash & (size_t)(cap - 1);
        while (tab[s] >= 0) s = (s + 1) & (size_t)(cap - 1);
        tab[s] = id;
    }
    free(p->tab);
    p->tab = tab;
    p->captab = cap;
    return true;
}

/* the id of the node equal to t over args (and coefs for EMX_AFF), made if new */
static int intern(emc_pool *p, emc_x t, const int *args, const int64_t *coefs) {
    if (p->oom) return -1;
    for (int k = 0; k < t.n; k++)
        if (args[k] < 0) return -1;
    t.hash = hash_of(&t, args, coefs);
    if ((p->nx + 1) * 2 > p->captab && !rehash(p)) return -1;
    size_t s = (size_t)t.hash & (size_t)(p->captab - 1);
    for (; p->tab[s] >= 0; s = (s + 1) & (size_t)(p->captab - 1))
        if (same(p, p->tab[s], &t, args, coefs)) return p->tab[s];
    if (p->nx == p->capx) {
        int cap = p->capx ? p->capx * 2 : 1024;
        emc_x *x = realloc(p->x, sizeof *x * (size_t)cap);
        if (!x) return oom(p), -1;
        p->x = x;
        p->capx = cap;
    }
    if (p->nargv + t.n > p->capargv) {
        int cap = p->capargv ? p->capargv * 2 : 4096;
        while (cap < p->nargv + t.n) cap *= 2;
        int *a = realloc(p->argv, sizeof *a * (size_t)cap);
        if (a) p->argv = a;
        int64_t *c = realloc(p->coefv, sizeof *c * (size_t)cap);
        if (c) p->coefv = c;
        if (!a || !c) return oom(p), -1;
        p->capargv = cap;
    }
    t.a = p->nargv;
    for (int k = 0; k < t.n; k++) {
        p->argv[t.a + k] = args[k];
        p->coefv[t.a + k] = coefs ? coefs[k] : 0;
    }
    p->nargv += t.n;
    int id = p->nx++;
    p->x[id] = t;
    p->tab[s] = id;
    return id;
}

static emc_x tmpl(emc_xk kind, emc_ty ty) {
    emc_x t;
    memset(&t, 0, sizeof t);
    t.kind = (uint8_t)kind;
    t.ty = (uint8_t)ty;
    t.lo = RMIN;
    t.hi = RMAX;
    return t;
}

/* saturating range arithmetic */
static int64_t sadd(int64_t a, int64_t b) {
    int64_t r;
    if (a == RMIN || b == RMIN) return RMIN;
    if (a == RMAX || b == RMAX) return RMAX;
    return __builtin_add_overflow(a, b, &r) ? (a > 0 ? RMAX : RMIN) : r;
}
static int64_t smul(int64_t a, int64_t k) {
    int64_t r;
    if (k == 0) return 0;
    if (a == RMIN || a == RMAX) return (a > 0) == (k > 0) ? RMAX : RMIN;
    return __builtin_mul_overflow(a, k, &r) ? ((a > 0) == (k > 0) ? RMAX : RMIN) : r;
}

/* ---- constants and variables ---------------------------------------------------------------------- */
int emc_const_i(emc_pool *p, emc_ty ty, int64_t v) {
    emc_x t = tmpl(EMX_CONST, ty);
    t.i = ty == EMC_BOOL ? v != 0 : v;
    t.lo = t.hi = t.i;
    return intern(p, t, NULL, NULL);
}

int emc_const_f(emc_pool *p, emc_ty ty, double v) {
    emc_x t = tmpl(EMX_CONST, ty);
    t.f = ty == EMC_F32 ? (double)(float)v : v;
    if (t.f == 0) t.f = signbit(t.f) ? -0.0 : 0.0;
    return intern(p, t, NULL, NULL);
}

/* the value d stored into dt (emt_store) and read back in dt's compute type */
int emc_const_of(emc_pool *p, em_dtype dt, double v) {
    char buf[8];
    emt_store(buf, dt, v);
    emc_ty ty = emc_ctype(dt);
    if (emc_is_float_ty(ty)) return emc_const_f(p, ty, emt_load(buf, dt));
    return emc_const_i(p, ty, emt_load_i64(buf, dt));
}

int emc_var(emc_pool *p, int dim, int64_t extent) {
    if (extent == 1) return emc_const_i(p, EMC_I64, 0);
    emc_x t = tmpl(EMX_VAR, EMC_I64);
    t.i = dim;
    t.aux = extent;
    t.lo = 0;
    t.hi = extent > 0 ? extent - 1 : 0;
    return intern(p, t, NULL, NULL);
}

/* ---- a structural order ----------------------------------------------------------------------------
 * Node ids follow creation order, and creation order can follow the order in which the C compiler
 * evaluates function arguments (unspecified in C: f(mk(a), mk(b)) makes a's node first under one
 * compiler and b's under another). Anything canonical (the order of an index sum's terms, which
 * also steers the simplifier) is therefore ordered by structure: kind, type, op, payload, then
 * the arguments, recursively. Nodes are interned, so two different ids are two different
 * structures and the order is total; the recursion follows one path (equal arguments share an id
 * and are skipped), so it costs the depth of the expressions. */
static int x_cmp(const emc_pool *p, int a, int b) {
    while (a != b) {
        const emc_x *x = &p->x[a], *y = &p->x[b];
        if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
        if (x->ty != y->ty) return x->ty < y->ty ? -1 : 1;
        if (x->op != y->op) return x->op < y->op ? -1 : 1;
        if (x->i != y->i) return x->i < y->i ? -1 : 1;
        if (x->aux != y->aux) return x->aux < y->aux ? -1 : 1;
        uint64_t fx, fy;
        memcpy(&fx, &x->f, 8);
        memcpy(&fy, &y->f, 8);
        if (fx != fy) return fx < fy ? -1 : 1;
        if (x->n != y->n) return x->n < y->n ? -1 : 1;
        int k = 0;
        while (k < x->n && p->argv[x->a + k] == p->argv[y->a + k] && p->coefv[x->a + k] == p->coefv[y->a + k]) k++;
        if (k == x->n) return 0; /* not reached for interned nodes */
        if (p->argv[x->a + k] == p->argv[y->a + k]) return p->coefv[x->a + k] < p->coefv[y->a + k] ? -1 : 1;
        a = p->argv[x->a + k];
        b = p->argv[y->a + k];
    }
    return 0;
}

/* ---- affine sums ------------------------------------------------------------------------------- */
typedef struct {
    int64_t c;
    int n;
    int t[AFF_MAX];
    int64_t k[AFF_MAX];
    bool full;
} aff;

static void aff_push(aff *s, int term, int64_t k) {
    for (int j = 0; j < s->n; j++)
        if (s->t[j] == term) {
            s->k[j] += k;
            return;
        }
    if (s->n == AFF_MAX) {
        s->full = true;
        return;
    }
    s->t[s->n] = term;
    s->k[s->n++] = k;
}

static void aff_add(const emc_pool *p, aff *s, int id, int64_t scale) {
    const emc_x *x = &p->x[id];
    if (x->kind == EMX_CONST) {
        s->c += scale * x->i;
    } else if (x->kind == EMX_AFF) {
        s->c += scale * x->i;
        for (int j = 0; j < x->n; j++) aff_push(s, p->argv[x->a + j], scale * p->coefv[x->a + j]);
    } else {
        aff_push(s, id, scale);
    }
}

static void aff_drop(aff *s, int j) {
    s->t[j] = s->t[s->n - 1];
    s->k[j] = s->k[s->n - 1];
    s->n--;
}

/* drops zero terms, undoes div/mod pairs (c n (A / n) + c (A % n) = c A), sorts the terms */
static void aff_norm(const emc_pool *p, aff *s) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int j = 0; j < s->n; j++)
            if (s->k[j] == 0) aff_drop(s, j--);
        for (int j = 0; j < s->n && !changed; j++) {
            const emc_x *d = &p->x[s->t[j]];
            if (d->kind != EMX_DIV) continue;
            int A = p->argv[d->a];
            for (int m = 0; m < s->n; m++) {
                const emc_x *r = &p->x[s->t[m]];
                if (r->kind != EMX_MOD || p->argv[r->a] != A || r->i != d->i) continue;
                int64_t c = s->k[m];
                if (s->k[j] != c * d->i) continue;
                int hi = j > m ? j : m, lo = j > m ? m : j;
                aff_drop(s, hi);
                aff_drop(s, lo);
                aff_add(p, s, A, c);
                changed = true;
                break;
            }
        }
    }
    for (int i = 1; i < s->n; i++) /* insertion sort by structure (not by id: see x_cmp) */
        for (int j = i; j > 0 && x_cmp(p, s->t[j - 1], s->t[j]) > 0; j--) {
            int t = s->t[j];
            s->t[j] = s->t[j - 1];
            s->t[j - 1] = t;
            int64_t k = s->k[j];
            s->k[j] = s->k[j - 1];
            s->k[j - 1] = k;
        }
}

static void aff_range(const emc_pool *p, const aff *s, int64_t *lo, int64_t *hi) {
    int64_t l = s->c, h = s->c;
    for (int j = 0; j < s->n; j++) {
        const emc_x *x = &p->x[s->t[j]];
        int64_t a = smul(x->lo, s->k[j]), b = smul(x->hi, s->k[j]);
        l = sadd(l, a < b ? a : b);
        h = sadd(h, a < b ? b : a);
    }
    *lo = l;
    *hi = h;
}

static int aff_make(emc_pool *p, aff *s) {
    if (p->oom) return -1;
    if (s->full) {
        em_seterr(EM_ERR_COMPILE, "compiler: an index expression has more than %d terms", AFF_MAX);
        return -1;
    }
    aff_norm(p, s);
    if (s->n == 0) return emc_const_i(p, EMC_I64, s->c);
    if (s->n == 1 && s->k[0] == 1 && s->c == 0) return s->t[0];
    emc_x t = tmpl(EMX_AFF, EMC_I64);
    t.i = s->c;
    t.n = s->n;
    aff_range(p, s, &t.lo, &t.hi);
    return intern(p, t, s->t, s->k);
}

static void aff_of(const emc_pool *p, aff *s, int id) {
    memset(s, 0, sizeof *s);
    aff_add(p, s, id, 1);
}

int emc_ix_add(emc_pool *p, int a, int b) {
    if (a < 0 || b < 0) return -1;
    aff s;
    aff_of(p, &s, a);
    aff_add(p, &s, b, 1);
    return aff_make(p, &s);
}

int emc_ix_addc(emc_pool *p, int a, int64_t c) {
    if (a < 0) return -1;
    aff s;
    aff_of(p, &s, a);
    s.c += c;
    return aff_make(p, &s);
}

int emc_ix_mul(emc_pool *p, int a, int64_t k) {
    if (a < 0) return -1;
    aff s;
    memset(&s, 0, sizeof s);
    aff_add(p, &s, a, k);
    return aff_make(p, &s);
}

int emc_ix_flat(emc_pool *p, const int *idx, const int64_t *shape, int nd) {
    aff s;
    memset(&s, 0, sizeof s);
    int64_t st = 1;
    for (int d = nd - 1; d >= 0; d--) {
        if (idx[d] < 0) return -1;
        aff_add(p, &s, idx[d], st);
        st *= shape[d] > 0 ? shape[d] : 1;
    }
    return aff_make(p, &s);
}

static int64_t gcd64(int64_t a, int64_t b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* s = big + small where big holds the terms with coefficient >= threshold; g = gcd(k, big's
   coefficients). Finds the smallest threshold with 0 <= small < g and g > 1 (so that
   (big + small) / k = (big / g) / (k / g) and (big + small) % k = g ((big / g) % (k / g)) + small).
   All coefficients must be positive. Returns g (0 when none) and fills big (divided by g) and
   small. */
static int64_t split_gcd(const emc_pool *p, const aff *s, int64_t k, aff *big, aff *small) {
    for (int j = 0; j < s->n; j++)
        if (s->k[j] <= 0) return 0;
    for (int j = 0; j < s->n; j++) { /* threshold: coefficient of term j */
        int64_t th = s->k[j], g = k;
        memset(big, 0, sizeof *big);
        memset(small, 0, sizeof *small);
        small->c = s->c;
        for (int m = 0; m < s->n; m++) {
            if (s->k[m] >= th) g = gcd64(g, s->k[m]);
            else aff_push(small, s->t[m], s->k[m]);
        }
        if (g <= 1) continue;
        int64_t lo, hi;
        aff_range(p, small, &lo, &hi);
        if (lo < 0 || hi >= g) continue;
        for (int m = 0; m < s->n; m++)
            if (s->k[m] >= th) aff_push(big, s->t[m], s->k[m] / g);
        return g;
    }
    return 0;
}

int emc_ix_div(emc_pool *p, int a, int64_t k) {
    if (a < 0) return -1;
    EM_ASSERT(k >= 1);
    if (k == 1) return a;
    const emc_x *x = &p->x[a];
    if (x->kind == EMX_CONST) return emc_const_i(p, EMC_I64, x->i / k);
    if (x->lo >= 0 && x->hi < k) return emc_const_i(p, EMC_I64, 0);
    if (x->lo >= 0) {
        int64_t kk;
        if (x->kind == EMX_DIV && !__builtin_mul_overflow(x->i, k, &kk)) return emc_ix_div(p, p->argv[x->a], kk);
        aff s, q, r;
        aff_of(p, &s, a);
        memset(&q, 0, sizeof q);
        memset(&r, 0, sizeof r);
        r.c = s.c;
        if (s.c >= k) { /* constant part */
            q.c = s.c / k;
            r.c = s.c % k;
        }
        for (int j = 0; j < s.n; j++) {
            if (s.k[j] % k == 0) aff_push(&q, s.t[j], s.k[j] / k);
            else aff_push(&r, s.t[j], s.k[j]);
        }
        int64_t rlo, rhi;
        aff_range(p, &r, &rlo, &rhi);
        if ((q.n > 0 || q.c > 0) && rlo >= 0) {
            int qa = aff_make(p, &q), ra = aff_make(p, &r);
            return emc_ix_add(p, qa, emc_ix_div(p, ra, k));
        }
        aff big, small;
        int64_t g = split_gcd(p, &s, k, &big, &small);
        if (g > 1) return emc_ix_div(p, aff_make(p, &big), k / g);
    }
    emc_x t = tmpl(EMX_DIV, EMC_I64);
    t.i = k;
    t.n = 1;
    if (x->lo >= 0) {
        t.lo = x->lo / k;
        t.hi = x->hi == RMAX ? RMAX : x->hi / k;
    }
    return intern(p, t, &a, NULL);
}

int emc_ix_mod(emc_pool *p, int a, int64_t k) {
    if (a < 0) return -1;
    EM_ASSERT(k >= 1);
    if (k == 1) return emc_const_i(p, EMC_I64, 0);
    const emc_x *x = &p->x[a];
    if (x->kind == EMX_CONST) return emc_const_i(p, EMC_I64, x->i % k);
    if (x->lo >= 0 && x->hi < k) return a;
    if (x->lo >= 0) {
        if (x->kind == EMX_MOD && x->i % k == 0) return emc_ix_mod(p, p->argv[x->a], k);
        aff s, r;
        aff_of(p, &s, a);
        memset(&r, 0, sizeof r);
        bool dropped = false;
        r.c = s.c;
        if (s.c >= k) {
            r.c = s.c % k;
            dropped = true;
        }
        for (int j = 0; j < s.n; j++) {
            if (s.k[j] % k == 0) dropped = true;
            else aff_push(&r, s.t[j], s.k[j]);
        }
        int64_t rlo, rhi;
        aff_range(p, &r, &rlo, &rhi);
        if (dropped && rlo >= 0) return emc_ix_mod(p, aff_make(p, &r), k);
        aff big, small;
        int64_t g = split_gcd(p, &s, k, &big, &small);
        if (g > 1) {
            int m = emc_ix_mod(p, aff_make(p, &big), k / g);
            int mg = emc_ix_mul(p, m, g); /* sequenced: node ids follow creation order */
            return emc_ix_add(p, mg, aff_make(p, &small));
        }
    }
    emc_x t = tmpl(EMX_MOD, EMC_I64);
    t.i = k;
    t.n = 1;
    t.lo = x->lo >= 0 ? 0 : -(k - 1);
    t.hi = k - 1;
    if (x->lo >= 0 && x->hi < t.hi) t.hi = x->hi;
    return intern(p, t, &a, NULL);
}

int emc_ix_clamp(emc_pool *p, int a, int64_t lo, int64_t hi) {
    if (a < 0) return -1;
    const emc_x *x = &p->x[a];
    if (x->lo >= lo && x->hi <= hi) return a;
    if (x->kind == EMX_CONST) return emc_const_i(p, EMC_I64, x->i < lo ? lo : x->i > hi ? hi : x->i);
    emc_x t = tmpl(EMX_CLAMP, EMC_I64);
    t.i = lo;
    t.aux = hi;
    t.n = 1;
    t.lo = x->lo > lo ? x->lo : lo;
    t.hi = x->hi < hi ? x->hi : hi;
    return intern(p, t, &a, NULL);
}

/* ---- value nodes ----------------------------------------------------------------------------------- */
int emc_loadv(emc_pool *p, int value, em_dtype dt, const int *idx, int nd) {
    emc_x t = tmpl(EMX_LOADV, emc_ctype(dt));
    t.i = value;
    t.op = (int16_t)dt;
    t.n = nd;
    return intern(p, t, idx, NULL);
}

int emc_load(emc_pool *p, int value, em_dtype dt, int flat) {
    emc_x t = tmpl(EMX_LOAD, emc_ctype(dt));
    t.i = value;
    t.op = (int16_t)dt;
    t.n = 1;
    return intern(p, t, &flat, NULL);
}

int emc_acc(emc_pool *p, int slot, emc_ty ty) {
    emc_x t = tmpl(EMX_ACC, ty);
    t.i = slot;
    return intern(p, t, NULL, NULL);
}

static bool is_compare(int op) {
    return op == EMO_eq || op == EMO_ne || op == EMO_lt || op == EMO_le || op == EMO_gt || op == EMO_ge ||
           op == EMO_logical_and || op == EMO_logical_or;
}

int emc_un(emc_pool *p, int op, int a) {
    if (a < 0) return -1;
    emc_x t = tmpl(EMX_UN, op == EMO_logical_not ? EMC_BOOL : (emc_ty)p->x[a].ty);
    t.op = (int16_t)op;
    t.n = 1;
    return intern(p, t, &a, NULL);
}

int emc_bin(emc_pool *p, int op, int a, int b) {
    if (a < 0 || b < 0) return -1;
    EM_ASSERT(p->x[a].ty == p->x[b].ty);
    emc_x t = tmpl(EMX_BIN, is_compare(op) ? EMC_BOOL : (emc_ty)p->x[a].ty);
    t.op = (int16_t)op;
    t.n = 2;
    int args[2] = {a, b};
    return intern(p, t, args, NULL);
}

int emc_where(emc_pool *p, int c, int a, int b) {
    if (c < 0 || a < 0 || b < 0) return -1;
    EM_ASSERT(p->x[c].ty == EMC_BOOL && p->x[a].ty == p->x[b].ty);
    if (p->x[c].kind == EMX_CONST) return p->x[c].i ? a : b;
    if (a == b) return a;
    emc_x t = tmpl(EMX_WHERE, (emc_ty)p->x[a].ty);
    t.n = 3;
    int args[3] = {c, a, b};
    return intern(p, t, args, NULL);
}

/* does a hold exactly the values of dtype dt already (so a cast to dt changes nothing)? */
static bool exact_in(const emc_pool *p, int a, em_dtype dt) {
    const emc_x *x = &p->x[a];
    if (x->ty != emc_ctype(dt)) return false;
    switch (dt) {
    case EM_F32: case EM_F64: case EM_I64: case EM_BOOL: return true;
    default: break;
    }
    if ((x->kind == EMX_LOAD || x->kind == EMX_LOADV || x->kind == EMX_CAST) && x->op == (int16_t)dt) return true;
    if (x->kind == EMX_CONST) {
        char buf[8];
        if (emc_is_float_ty((emc_ty)x->ty)) {
            emt_store(buf, dt, x->f);
            return emt_load(buf, dt) == x->f;
        }
        emt_store(buf, dt, (double)x->i);
        return emt_load_i64(buf, dt) == x->i;
    }
    return false;
}

/* what the generated conversion gives for a constant (the same rules as emt_copy) */
static int fold_cast(emc_pool *p, const emc_x *x, em_dtype dt) {
    bool src_int = !emc_is_float_ty((emc_ty)x->ty);
    double v = src_int ? (double)x->i : x->f;
    int64_t iv = x->i;
    switch (dt) {
    case EM_F32: return emc_const_f(p, EMC_F32, (double)(float)v);
    case EM_F64: return emc_const_f(p, EMC_F64, v);
    case EM_F16: return emc_const_f(p, EMC_F32, emt_f16_to_f32(emt_f32_to_f16((float)v)));
    case EM_BF16: return emc_const_f(p, EMC_F32, emt_bf16_to_f32(emt_f32_to_bf16((float)v)));
    case EM_BOOL: return emc_const_i(p, EMC_BOOL, src_int ? iv != 0 : v != 0);
    case EM_I64:
        if (!src_int) {
            char buf[8];
            double d = v;
            memcpy(buf, &d, 8);
            iv = emt_load_i64(buf, EM_F64);
        }
        return emc_const_i(p, EMC_I64, iv);
    case EM_I32: case EM_U8: {
        char buf[8];
        if (src_int) {
            if (dt == EM_I32) return emc_const_i(p, EMC_I64, (int32_t)(uint32_t)(uint64_t)iv);
            return emc_const_i(p, EMC_I64, (uint8_t)(uint64_t)iv);
        }
        emt_store(buf, dt, v);
        return emc_const_i(p, EMC_I64, emt_load_i64(buf, dt));
    }
    }
    return -1;
}

int emc_cast(emc_pool *p, int a, em_dtype dt) {
    if (a < 0) return -1;
    if (exact_in(p, a, dt)) return a;
    const emc_x *x = &p->x[a];
    if (x->kind == EMX_CONST) return fold_cast(p, x, dt);
    emc_x t = tmpl(EMX_CAST, emc_ctype(dt));
    t.op = (int16_t)dt;
    t.n = 1;
    if (dt == EM_I32) {
        t.lo = INT32_MIN;
        t.hi = INT32_MAX;
    } else if (dt == EM_U8) {
        t.lo = 0;
        t.hi = 255;
    }
    return intern(p, t, &a, NULL);
}

int emc_conv(emc_pool *p, int a, emc_ty ty) { return emc_cast(p, a, emc_ty_dtype(ty)); }

int emc_rand(emc_pool *p, int kind, int slot, int flat, emc_ty ty) {
    emc_x t = tmpl(EMX_RAND, ty);
    t.op = (int16_t)kind;
    t.i = slot;
    t.n = 1;
    return intern(p, t, &flat, NULL);
}

int emc_check(emc_pool *p, int a, int64_t n) {
    if (a < 0) return -1;
    emc_x t = tmpl(EMX_CHECK, EMC_I64);
    t.i = n;
    t.n = 1;
    t.lo = 0;
    t.hi = n > 0 ? n - 1 : 0;
    return intern(p, t, &a, NULL);
}

/* ---- rewriting ------------------------------------------------------------------------------------- */
int emc_rebuild(emc_pool *p, int node, const int *args) {
    emc_x x = p->x[node];
    for (int k = 0; k < x.n; k++)
        if (args[k] < 0) return -1;
    switch ((emc_xk)x.kind) {
    case EMX_CONST: case EMX_VAR: case EMX_ACC: return node;
    case EMX_AFF: {
        aff s;
        memset(&s, 0, sizeof s);
        s.c = x.i;
        for (int k = 0; k < x.n; k++) aff_add(p, &s, args[k], p->coefv[x.a + k]);
        return aff_make(p, &s);
    }
    case EMX_DIV: return emc_ix_div(p, args[0], x.i);
    case EMX_MOD: return emc_ix_mod(p, args[0], x.i);
    case EMX_CLAMP: return emc_ix_clamp(p, args[0], x.i, x.aux);
    case EMX_LOADV: return emc_loadv(p, (int)x.i, (em_dtype)x.op, args, x.n);
    case EMX_LOAD: return emc_load(p, (int)x.i, (em_dtype)x.op, args[0]);
    case EMX_UN: return emc_un(p, x.op, args[0]);
    case EMX_BIN: return emc_bin(p, x.op, args[0], args[1]);
    case EMX_WHERE: return emc_where(p, args[0], args[1], args[2]);
    case EMX_CAST: return emc_cast(p, args[0], (em_dtype)x.op);
    case EMX_RAND: return emc_rand(p, x.op, (int)x.i, args[0], (emc_ty)x.ty);
    case EMX_CHECK: return emc_check(p, args[0], x.i);
    }
    return -1;
}

typedef struct {
    int *key, *val;
    int cap, n;
} memo;

static int *memo_slot(memo *m, int key) {
    if ((m->n + 1) * 2 > m->cap) {
        int cap = m->cap ? m->cap * 2 : 256;
        int *k = malloc(sizeof(int) * (size_t)cap), *v = malloc(sizeof(int) * (size_t)cap);
        if (!k || !v) {
            free(k);
            free(v);
            return NULL;
        }
        for (int i = 0; i < cap; i++) k[i] = -1;
        for (int i = 0; i < m->cap; i++) {
            if (m->key[i] < 0) continue;
            size_t s = ((size_t)m->key[i] * 2654435761u) & (size_t)(cap - 1);
            while (k[s] >= 0) s = (s + 1) & (size_t)(cap - 1);
            k[s] = m->key[i];
            v[s] = m->val[i];
        }
        free(m->key);
        free(m->val);
        m->key = k;
        m->val = v;
        m->cap = cap;
    }
    size_t s = ((size_t)key * 2654435761u) & (size_t)(m->cap - 1);
    while (m->key[s] >= 0 && m->key[s] != key) s = (s + 1) & (size_t)(m->cap - 1);
    if (m->key[s] < 0) {
        m->key[s] = key;
        m->val[s] = -3; /* not computed */
        m->n++;
    }
    return &m->val[s];
}

static int rewrite_rec(emc_pool *p, int id, emc_rewrite_fn fn, void *ctx, memo *m, int depth) {
    if (id < 0) return -1;
    if (depth > 20000) {
        em_seterr(EM_ERR_COMPILE, "compiler: expression too deep");
        return -1;
    }
    int *slot = memo_slot(m, id);
    if (!slot) return oom(p), -1;
    if (*slot != -3) return *slot;
    int n = p->x[id].n, small[16], *args = n <= 16 ? small : malloc(sizeof(int) * (size_t)n);
    if (!args) return oom(p), -1;
    bool same_args = true;
    for (int k = 0; k < n; k++) {
        args[k] = rewrite_rec(p, EMC_ARG(p, id, k), fn, ctx, m, depth + 1);
        same_args &= args[k] == EMC_ARG(p, id, k);
    }
    int r = fn ? fn(ctx, p, id, args) : -2;
    if (r == -2) r = same_args ? id : emc_rebuild(p, id, args);
    if (args != small) free(args);
    slot = memo_slot(m, id); /* the table may have moved */
    if (!slot) return oom(p), -1;
    *slot = r;
    return r;
}

int emc_rewrite(emc_pool *p, int root, emc_rewrite_fn fn, void *ctx) {
    memo m = {0};
    int r = rewrite_rec(p, root, fn, ctx, &m, 0);
    free(m.key);
    free(m.val);
    return r;
}

typedef struct {
    const int *vars;
    int n;
} subst_ctx;

static int subst_fn(void *vctx, emc_pool *p, int node, const int *args) {
    (void)args;
    const subst_ctx *s = vctx;
    const emc_x *x = &p->x[node];
    if (x->kind == EMX_VAR && x->i < s->n) return s->vars[x->i];
    return -2;
}

int emc_subst(emc_pool *p, int root, const int *vars, int nvars) {
    subst_ctx s = {vars, nvars};
    return emc_rewrite(p, root, subst_fn, &s);
}

/* ---- analyses ---------------------------------------------------------------------------------- */
/* The marks are scratch state of the pool (hence the casts from const): one array of generations,
   so a traversal costs what it visits, not the pool's size. Traversals must not nest. */
uint32_t emc_visit_new(const emc_pool *cp) {
    emc_pool *p = (emc_pool *)cp;
    if (p->nmark < p->nx) {
        int n = p->capx > p->nx ? p->capx : p->nx;
        uint32_t *m = realloc(p->mark, sizeof *m * (size_t)n);
        if (!m) return 0; /* callers then see every node as new: still correct, only slower */
        memset(m + p->nmark, 0, sizeof *m * (size_t)(n - p->nmark));
        p->mark = m;
        p->nmark = n;
    }
    if (++p->gen == 0) {
        memset(p->mark, 0, sizeof *p->mark * (size_t)p->nmark);
        p->gen = 1;
    }
    return p->gen;
}

bool emc_seen(const emc_pool *cp, int id, uint32_t gen) {
    emc_pool *p = (emc_pool *)cp;
    if (gen == 0 || id >= p->nmark) return false;
    if (p->mark[id] == gen) return true;
    p->mark[id] = gen;
    return false;
}

static bool uses_rec(const emc_pool *p, int id, emc_xk kind, int64_t i, uint32_t gen) {
    if (emc_seen(p, id, gen)) return false;
    const emc_x *x = &p->x[id];
    if (x->kind == kind && (i < 0 || x->i == i)) return true;
    for (int k = 0; k < x->n; k++)
        if (uses_rec(p, p->argv[x->a + k], kind, i, gen)) return true;
    return false;
}

bool emc_uses(const emc_pool *p, int root, emc_xk kind, int64_t i) {
    if (root < 0) return false;
    return uses_rec(p, root, kind, i, emc_visit_new(p));
}

static uint64_t acc_rec(const emc_pool *p, int id, uint32_t gen) {
    if (emc_seen(p, id, gen)) return 0;
    const emc_x *x = &p->x[id];
    uint64_t m = x->kind == EMX_ACC && x->i < 64 ? (uint64_t)1 << x->i : 0;
    for (int k = 0; k < x->n; k++) m |= acc_rec(p, p->argv[x->a + k], gen);
    return m;
}

uint64_t emc_acc_mask(const emc_pool *p, int root) { return root < 0 ? 0 : acc_rec(p, root, emc_visit_new(p)); }

static int op_cost(int op) {
    switch (op) {
    case EMO_exp: case EMO_log: case EMO_log1p: case EMO_sin: case EMO_cos: case EMO_tanh: case EMO_sigmoid:
    case EMO_gelu: case EMO_gelu_tanh: case EMO_silu: case EMO_pow:
        return 8;
    case EMO_div: case EMO_sqrt: case EMO_rsqrt: case EMO_reciprocal: return 3;
    default: return 1;
    }
}

static int cost_rec(const emc_pool *p, int id, uint32_t gen) {
    if (emc_seen(p, id, gen)) return 0;
    const emc_x *x = &p->x[id];
    int c = 0;
    switch ((emc_xk)x->kind) {
    case EMX_UN: case EMX_BIN: c = op_cost(x->op); break;
    case EMX_LOADV: case EMX_LOAD: case EMX_WHERE: case EMX_CAST: case EMX_CHECK: c = 1; break;
    case EMX_RAND: c = 12; break;
    default: break;
    }
    for (int k = 0; k < x->n; k++) c += cost_rec(p, p->argv[x->a + k], gen);
    return c;
}

int emc_cost(const emc_pool *p, int root) { return root < 0 ? 0 : cost_rec(p, root, emc_visit_new(p)); }

/* ---- printing (logs and tests) ---------------------------------------------------------------------- */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *fmt, ...) EM_PRINTF(2, 3);
static void sb_put(sbuf *b, const char *fmt, ...) {
    if (b->n > 4000) return;
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k >= sizeof tmp) k = (int)sizeof tmp - 1;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = (b->n + (size_t)k + 1) * 2;
        char *s = realloc(b->s, cap);
        if (!s) return;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->n, tmp, (size_t)k + 1);
    b->n += (size_t)k;
}

static void str_rec(const emc_pool *p, int id, sbuf *b) {
    const emc_x *x = &p->x[id];
    switch ((emc_xk)x->kind) {
    case EMX_CONST:
        if (emc_is_float_ty((emc_ty)x->ty)) sb_put(b, "%g", x->f);
        else sb_put(b, "%lld", (long long)x->i);
        return;
    case EMX_VAR: sb_put(b, "i%lld", (long long)x->i); return;
    case EMX_ACC: sb_put(b, "acc%lld", (long long)x->i); return;
    case EMX_AFF:
        sb_put(b, "(");
        for (int k = 0; k < x->n; k++) {
            long long c = (long long)p->coefv[x->a + k];
            if (k) sb_put(b, " + ");
            if (c != 1) sb_put(b, "%lld*", c);
            str_rec(p, p->argv[x->a + k], b);
        }
        if (x->i) sb_put(b, " + %lld", (long long)x->i);
        sb_put(b, ")");
        return;
    case EMX_DIV: case EMX_MOD:
        sb_put(b, "(");
        str_rec(p, p->argv[x->a], b);
        sb_put(b, x->kind == EMX_DIV ? " / %lld)" : " %% %lld)", (long long)x->i);
        return;
    case EMX_LOADV: case EMX_LOAD:
        sb_put(b, "%%%lld[", (long long)x->i);
        for (int k = 0; k < x->n; k++) {
            if (k) sb_put(b, ", ");
            str_rec(p, p->argv[x->a + k], b);
        }
        sb_put(b, "]");
        return;
    default: break;
    }
    const char *name = x->kind == EMX_UN || x->kind == EMX_BIN ? emo_table[x->op].name
                       : x->kind == EMX_WHERE ? "where" : x->kind == EMX_CAST ? em_dtype_name((em_dtype)x->op)
                       : x->kind == EMX_RAND ? "rand" : x->kind == EMX_CLAMP ? "clamp" : "check";
    sb_put(b, "%s(", name);
    for (int k = 0; k < x->n; k++) {
        if (k) sb_put(b, ", ");
        str_rec(p, p->argv[x->a + k], b);
    }
    sb_put(b, ")");
}

char *emc_x_str(const emc_pool *p, int root) {
    sbuf b = {0};
    if (root < 0) sb_put(&b, "<error>");
    else str_rec(p, root, &b);
    return b.s;
}

/* ---- the ops walk ------------------------------------------------------------------------------------ */
static em_status walk_rec(const emc_pool *p, int id, const emc_ops *ops, void *ctx, int *h, int depth) {
    if (h[id] >= 0) return EM_OK;
    if (depth > 20000) return em_seterr(EM_ERR_COMPILE, "compiler: loop body too deep");
    const emc_x *x = &p->x[id];
    int small[16], *a = x->n <= 16 ? small : malloc(sizeof(int) * (size_t)x->n);
    if (!a) return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    em_status st = EM_OK;
    for (int k = 0; k < x->n && st == EM_OK; k++) {
        int c = p->argv[x->a + k];
        st = walk_rec(p, c, ops, ctx, h, depth + 1);
        a[k] = h[c];
    }
    if (st == EM_OK) {
        switch ((emc_xk)x->kind) {
        case EMX_CONST: h[id] = ops->constant(ctx, p, id); break;
        case EMX_VAR: case EMX_AFF: case EMX_DIV: case EMX_MOD: case EMX_CLAMP: h[id] = ops->index(ctx, p, id, a); break;
        case EMX_LOAD: h[id] = ops->load(ctx, p, id, a[0]); break;
        case EMX_ACC: h[id] = ops->acc(ctx, p, id); break;
        case EMX_UN: h[id] = ops->unary(ctx, p, id, a[0]); break;
        case EMX_BIN: h[id] = ops->binary(ctx, p, id, a[0], a[1]); break;
        case EMX_WHERE: h[id] = ops->where(ctx, p, id, a[0], a[1], a[2]); break;
        case EMX_CAST: h[id] = ops->cast(ctx, p, id, a[0]); break;
        case EMX_RAND: h[id] = ops->rand(ctx, p, id, a[0]); break;
        case EMX_CHECK: h[id] = ops->check(ctx, p, id, a[0]); break;
        case EMX_LOADV: st = em_seterr(EM_ERR_COMPILE, "compiler: unscheduled load of value %%%lld", (long long)x->i); break;
        }
        if (st == EM_OK && h[id] < 0) st = em_seterr(EM_ERR_COMPILE, "compiler: backend failed on a node");
    }
    if (a != small) free(a);
    return st;
}

em_status emc_walk(const emc_pool *p, const int *roots, int n_roots, const emc_ops *ops, void *ctx, int *handles) {
    for (int r = 0; r < n_roots; r++) {
        if (roots[r] < 0) continue;
        em_status st = walk_rec(p, roots[r], ops, ctx, handles, 0);
        if (st != EM_OK) return st;
    }
    return EM_OK;
}

/* ---- a second ops implementation: counting what a loop body does (for EMBER_LOG=fusion) -------- */
static int n_const(void *c, const emc_pool *p, int n) { (void)c, (void)p; return n; }
static int n_index(void *c, const emc_pool *p, int n, const int *a) { (void)c, (void)p, (void)a; return n; }
static int n_load(void *c, const emc_pool *p, int n, int f) { (void)p, (void)f; ((emc_counts *)c)->loads++; return n; }
static int n_acc(void *c, const emc_pool *p, int n) { (void)c, (void)p; return n; }
static int n_unary(void *c, const emc_pool *p, int n, int a) {
    (void)a;
    emc_counts *k = c;
    if (op_cost(p->x[n].op) > 1) k->transcendental++;
    else k->arith++;
    return n;
}
static int n_binary(void *c, const emc_pool *p, int n, int a, int b) { return (void)b, n_unary(c, p, n, a); }
static int n_where(void *c, const emc_pool *p, int n, int x, int a, int b) {
    (void)p, (void)x, (void)a, (void)b;
    ((emc_counts *)c)->arith++;
    return n;
}
static int n_cast(void *c, const emc_pool *p, int n, int a) { (void)p, (void)a; ((emc_counts *)c)->casts++; return n; }
static int n_rand(void *c, const emc_pool *p, int n, int f) { (void)p, (void)f; ((emc_counts *)c)->transcendental++; return n; }
static int n_check(void *c, const emc_pool *p, int n, int a) { (void)p, (void)a; ((emc_counts *)c)->loads++; return n; }

static const emc_ops count_ops = {n_const, n_index, n_load, n_acc, n_unary, n_binary, n_where, n_cast, n_rand, n_check};

em_status emc_count(const emc_pool *p, const int *roots, int n_roots, emc_counts *out) {
    memset(out, 0, sizeof *out);
    int *h = malloc(sizeof(int) * ((size_t)p->nx + 1));
    if (!h) return em_seterr(EM_ERR_OOM, "compiler: out of memory");
    for (int i = 0; i < p->nx; i++) h[i] = -1;
    em_status st = emc_walk(p, roots, n_roots, &count_ops, out, h);
    free(h);
    return st;
}

/* harness.c - check counting, float64 reference tensors and input generation for the tests.
 * The random inputs come from the tests' own xorshift generator, so they do not depend on the
 * library's Philox code that some tests are checking. */
#include "harness.h"

#include <stdarg.h>

int th_passed, th_failed;

void th_check(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        th_passed++;
        return;
    }
    th_failed++;
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    const char *e = em_last_error();
    if (e && e[0]) fprintf(stderr, "  [last error: %s]", e);
    fprintf(stderr, "\n");
}

int th_summary(void) {
    printf("%d passed, %d failed\n", th_passed, th_failed);
    return th_failed ? 1 : 0;
}

/* ---- reference tensors ------------------------------------------------------------------------ */
int64_t th_numel(const th_rt *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

void th_rt_alloc(th_rt *t, const int64_t *shape, int ndim, em_dtype dt) {
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->dtype = dt;
    int64_t n = th_numel(t);
    t->d = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
}

void th_rt_free(th_rt *t) {
    free(t->d);
    t->d = NULL;
}

th_rt th_rt_from(em_tensor_t *t) {
    th_rt r;
    int nd = em_ndim(t);
    th_rt_alloc(&r, em_shape(t), nd, em_type(t));
    int64_t n = th_numel(&r);
    em_tensor_t *c = em_cast(t, EM_F64);
    em_to_data(c, r.d, (size_t)n * sizeof(double)); /* c belongs to the caller's scope */
    return r;
}

void th_unravel(int64_t flat, const int64_t *shape, int ndim, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = shape[d] ? flat % shape[d] : 0;
        flat = shape[d] ? flat / shape[d] : 0;
    }
}

int64_t th_bidx(const th_rt *t, const int64_t *idx, int ndim) {
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t i = idx[ndim - t->ndim + d];
        if (t->shape[d] == 1) i = 0;
        off = off * t->shape[d] + i;
    }
    return off;
}

int th_bshape(const th_rt *a, const th_rt *b, int64_t *out) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int64_t x = i < n - a->ndim ? 1 : a->shape[i - (n - a->ndim)];
        int64_t y = i < n - b->ndim ? 1 : b->shape[i - (n - b->ndim)];
        out[i] = x == 1 ? y : x;
    }
    return n;
}

void th_ref_unary(const th_rt *x, th_rt *out, double (*f)(double), em_dtype out_dt) {
    th_rt_alloc(out, x->shape, x->ndim, out_dt);
    for (int64_t i = 0; i < th_numel(x); i++) out->d[i] = f(x->d[i]);
}

void th_ref_binary(const th_rt *a, const th_rt *b, th_rt *out, double (*f)(double, double), em_dtype out_dt) {
    int64_t shape[TH_MAX_DIMS], idx[TH_MAX_DIMS];
    int nd = th_bshape(a, b, shape);
    th_rt_alloc(out, shape, nd, out_dt);
    for (int64_t i = 0; i < th_numel(out); i++) {
        th_unravel(i, shape, nd, idx);
        out->d[i] = f(a->d[th_bidx(a, idx, nd)], b->d[th_bidx(b, idx, nd)]);
    }
}

/* ---- random inputs ---------------------------------------------------------------------------- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
void th_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t next_u64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

double th_uniform(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

static double normal(void) {
    double u1 = th_uniform() + 1e-12, u2 = th_uniform();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double draw(const th_input *s, int64_t i, int64_t n) {
    switch (s->gen) {
    case TH_NORMAL: return normal();
    case TH_POS: return 0.5 + 1.5 * th_uniform();
    case TH_UNIT: return -0.9 + 1.8 * th_uniform();
    case TH_AWAY: { double v = normal(); return v >= 0 ? v + 0.25 : v - 0.25; }
    case TH_DISTINCT: return ((double)i - (double)n / 2) * 0.37; /* shuffled below */
    case TH_INDEX: return (double)(int64_t)(th_uniform() * (double)(s->hi > 0 ? s->hi : 1));
    case TH_BOOL: return th_uniform() < 0.5 ? 0.0 : 1.0;
    case TH_SMALLINT: return (double)((int64_t)(th_uniform() * 11.0) - 5);
    }
    return 0;
}

em_tensor_t *th_make_input(const th_input *s, em_dtype case_dt) {
    em_dtype dt = s->dtype == TH_T ? case_dt : s->dtype;
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = draw(s, i, n);
    if (s->gen == TH_DISTINCT)
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(th_uniform() * (double)(i + 1));
            double t = v[i]; v[i] = v[j]; v[j] = t;
        }
    em_tensor_t *base, *out;
    if (s->noncontig && s->ndim >= 2) {
        /* store transposed: build (..., n-1 reversed) then permute back */
        int64_t rshape[TH_MAX_DIMS];
        int perm[TH_MAX_DIMS];
        for (int d = 0; d < s->ndim; d++) {
            rshape[d] = s->shape[s->ndim - 1 - d];
            perm[d] = s->ndim - 1 - d;
        }
        double *rv = malloc((size_t)(n > 0 ? n : 1) * sizeof *rv);
        int64_t idx[TH_MAX_DIMS];
        for (int64_t i = 0; i < n; i++) {
            th_unravel(i, s->shape, s->ndim, idx);
            int64_t off = 0;
            for (int d = 0; d < s->ndim; d++) off = off * rshape[d] + idx[s->ndim - 1 - d];
            rv[off] = v[i];
        }
        base = em_from_data(rv, rshape, s->ndim, EM_F64);
        free(rv);
        em_tensor_t *p = em_permute(base, perm, s->ndim);
        out = em_cast(p, dt);
        if (dt == EM_F64) { /* em_cast returns p itself: keep it non-contiguous */ }
    } else if (s->noncontig && s->ndim == 1) {
        /* every other element of a twice-as-long vector */
        double *rv = calloc((size_t)(2 * n + 1), sizeof *rv);
        for (int64_t i = 0; i < n; i++) rv[2 * i] = v[i];
        int64_t len = 2 * n;
        base = em_from_data(rv, &len, 1, dt == EM_F64 ? EM_F64 : EM_F64);
        free(rv);
        em_tensor_t *c = em_cast(base, dt);
        out = em_slice(c, 0, 0, len, 2);
    } else {
        base = em_from_data(v, s->shape, s->ndim, EM_F64);
        out = em_cast(base, dt);
    }
    free(v);
    return out;
}

em_tensor_t *th_randn(const int64_t *shape, int ndim, em_dtype dt) {
    th_input s = {.ndim = ndim, .dtype = dt, .gen = TH_NORMAL};
    for (int d = 0; d < ndim; d++) s.shape[d] = shape[d];
    return th_make_input(&s, dt);
}

/* ---- comparison -------------------------------------------------------------------------------- */
double th_tol(em_dtype dt) {
    switch (dt) {
    case EM_F64: return 1e-10;
    case EM_F32: return 2e-5;
    case EM_F16: return 4e-3;
    case EM_BF16: return 3e-2;
    default: return 0;
    }
}

int th_compare(em_tensor_t *got, const th_rt *want, double tol, const char *what) {
    if (!got) {
        fprintf(stderr, "  %s: no output (%s)\n", what, em_last_error());
        return 0;
    }
    int nd = em_ndim(got);
    int ok = nd == want->ndim && em_type(got) == want->dtype;
    for (int d = 0; ok && d < nd; d++) ok = em_shape(got)[d] == want->shape[d];
    if (!ok) {
        fprintf(stderr, "  %s: got shape/dtype ndim=%d %s, want ndim=%d %s (", what, nd, em_dtype_name(em_type(got)),
                want->ndim, em_dtype_name(want->dtype));
        for (int d = 0; d < nd; d++) fprintf(stderr, "%lld ", (long long)em_shape(got)[d]);
        fprintf(stderr, "vs ");
        for (int d = 0; d < want->ndim; d++) fprintf(stderr, "%lld ", (long long)want->shape[d]);
        fprintf(stderr, ")\n");
        return 0;
    }
    th_rt g = th_rt_from(got);
    int64_t n = th_numel(want), bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = g.d[i], b = want->d[i];
        int good;
        if (isnan(b)) good = isnan(a);
        else if (isinf(b)) good = a == b;
        else {
            double err = fabs(a - b), lim = tol * (1.0 + fabs(b));
            good = err <= lim;
            if (err / (1.0 + fabs(b)) > worst) worst = err / (1.0 + fabs(b));
        }
        if (!good && bad++ == 0) first = i;
    }
    if (bad) fprintf(stderr, "  %s: %lld of %lld values differ (first at %lld: got %.9g want %.9g; worst rel %.3g, tol %.3g)\n",
                     what, (long long)bad, (long long)n, (long long)first, g.d[first], want->d[first], worst, tol);
    th_rt_free(&g);
    return bad == 0;
}

/* Tests of emk_gemm (src/ops/gemm_bf16.c): mixed-precision GEMM with f32/bf16 A, B, C in the
   EXACT and BF16 modes. Every case builds A (M x K), B (K x N) and C (M x N) as strided views into
   exactly-sized buffers (row-major, transposed, every-other-column with padded rows, reversed
   rows, transposed with padded columns) filled with random non-zero values, and checks:
   - each element against a float64 reference on the inputs the mode sees (bf16-rounded for
     BF16, widened for EXACT), within 2 (K + 2) f32-eps of sum |a b| (+ |c|), plus half a bf16 ulp
     for a bf16 C; elements outside the C view keep their sentinel; with accumulate == 0 the C
     view starts as NaN (never read);
   - EXACT: bitwise equal to emk_sgemm on widened f32 copies (bf16 C: its rounding);
   - BF16: bitwise equal across thread counts (parallel 0 / 2), to the portable kernels
     (emk_gemm_bf16_force_portable, the emulated vdpbf16ps) when the CPU has avx512_bf16, to a
     second copy of gemm_bf16.c compiled in here with EMK_GEMM_BF16_PORTABLE (as a CPU without
     avx512_bf16 builds it: integer rounding in the packers, scalar kernels), and f32 operands
     bitwise equal to bf16 copies rounded beforehand (emt_f32_to_bf16);
   - slicing: rows computed one (or three) at a time, and column halves, equal one big call bit
     for bit (small-M W^T path vs packed path included);
   - denormals: vdpbf16ps reads bf16 denormals as zero and flushes tiny results; the portable
     path must match it on crafted inputs (products around 1e-40, sums at FLT_MIN's boundary).
   Sizes include 0, 1, odd K (pair padding), ragged tiles (8 x 48) and K beyond one K block. */
#include "harness.h"

#include "ops/gemm.h"
#include "ops/gemm_impl.h"
#include "tensor/tensor.h"

#include <float.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* A second copy of gemm_bf16.c built as on a CPU without avx512_bf16 (EMK_GEMM_BF16_PORTABLE):
   its vector packers round f32 with integer arithmetic instead of vcvtne2ps2bf16 and its kernels
   emulate vdpbf16ps in scalar code. emk_gemm_nohw must give the library's bits. */
#define EMK_GEMM_BF16_PORTABLE 1
#define emk_gemm emk_gemm_nohw
#define emk_gemm_bf16_force_portable emk_gemm_bf16_force_portable_nohw
#define emk_gemm_bf16_has_hw emk_gemm_bf16_has_hw_nohw
#include "ops/gemm_bf16.c"
#undef emk_gemm
#undef emk_gemm_bf16_force_portable
#undef emk_gemm_bf16_has_hw
#undef EMK_GEMM_BF16_PORTABLE

enum view_kind { ROW_MAJOR, COL_MAJOR, STRIDED, FLIPPED, COL_PADDED, NUM_KINDS };
static const char *const kind_name[] = {"row", "col", "strided", "flipped", "col-padded"};

typedef struct {
    int64_t rows, cols, rs, cs, origin, len;
} view_t;

static view_t make_view(int64_t rows, int64_t cols, enum view_kind kind)
{
    view_t v = {rows, cols, cols, 1, 0, 1};
    switch (kind) {
    case ROW_MAJOR: break;
    case COL_MAJOR: v.rs = 1, v.cs = rows; break;
    case STRIDED: v.rs = 2 * cols + 3, v.cs = 2; break;
    case FLIPPED: v.rs = -(cols + 1); break;
    case COL_PADDED: v.rs = 1, v.cs = rows + 3; break;
    default: break;
    }
    if (rows == 0 || cols == 0)
        return v;
    int64_t lo = 0, hi = 0;
    int64_t lr = (rows - 1) * v.rs, lc = (cols - 1) * v.cs;
    int64_t corner[4] = {0, lr, lc, lr + lc};
    for (int c = 0; c < 4; c++) {
        lo = corner[c] < lo ? corner[c] : lo;
        hi = corner[c] > hi ? corner[c] : hi;
    }
    v.origin = -lo;
    v.len = hi - lo + 1;
    return v;
}

static int64_t at(const view_t *v, int64_t i, int64_t j) { return v->origin + i * v->rs + j * v->cs; }

/* A buffer of f32 or bf16 elements. */
typedef struct {
    emk_type t;
    int64_t len;
    void *p;
} buf_t;

static buf_t buf_new(emk_type t, int64_t len)
{
    buf_t b = {t, len, calloc((size_t)(len > 0 ? len : 1), t == EMK_BF16 ? 2 : 4)};
    if (!b.p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return b;
}

static buf_t buf_clone(const buf_t *b)
{
    buf_t c = buf_new(b->t, b->len);
    memcpy(c.p, b->p, (size_t)b->len * (b->t == EMK_BF16 ? 2 : 4));
    return c;
}

static float bf2f(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double buf_get(const buf_t *b, int64_t i)
{
    return b->t == EMK_BF16 ? bf2f(((uint16_t *)b->p)[i]) : ((float *)b->p)[i];
}

static void buf_set(buf_t *b, int64_t i, double v)
{
    if (b->t == EMK_BF16)
        ((uint16_t *)b->p)[i] = emt_f32_to_bf16((float)v);
    else
        ((float *)b->p)[i] = (float)v;
}

static uint32_t buf_bits(const buf_t *b, int64_t i)
{
    if (b->t == EMK_BF16)
        return ((uint16_t *)b->p)[i];
    uint32_t u;
    memcpy(&u, (float *)b->p + i, 4);
    return u;
}

static int same_bits(const buf_t *x, const buf_t *y) /* NaN == NaN whatever the payload */
{
    if (x->len != y->len || x->t != y->t)
        return 0;
    for (int64_t i = 0; i < x->len; i++) {
        double a = buf_get(x, i), b = buf_get(y, i);
        if (isnan(a) && isnan(b))
            continue;
        if (buf_bits(x, i) != buf_bits(y, i))
            return 0;
    }
    return 1;
}

static const double SENTINEL = 1234.5;

/* random non-zero values with magnitudes over a few binades, sentinel elsewhere */
static void fill_view(buf_t *b, const view_t *v)
{
    for (int64_t x = 0; x < b->len; x++)
        buf_set(b, x, SENTINEL);
    for (int64_t i = 0; i < v->rows; i++)
        for (int64_t j = 0; j < v->cols; j++) {
            double u = th_uniform() * 2.0 - 1.0;
            if (u == 0.0)
                u = 0.5;
            buf_set(b, at(v, i, j), u * ldexp(1.0, (int)(th_uniform() * 6.0) - 3));
        }
}

/* value of a view element as the mode sees it */
static double seen(const buf_t *b, int64_t off, emk_mm_mode mode)
{
    double x = buf_get(b, off);
    if (mode == EMK_MM_BF16 && b->t == EMK_F32)
        x = bf2f(emt_f32_to_bf16((float)x));
    return x;
}

typedef struct {
    int64_t M, N, K;
    enum view_kind ka, kb, kc;
    emk_type ta, tb, tc;
    emk_mm_mode mode;
    int accumulate, parallel;
} case_t;

static const char *tname(emk_type t) { return t == EMK_BF16 ? "bf16" : "f32"; }

static void describe(const case_t *t, char *s, size_t n)
{
    snprintf(s, n, "%s M=%lld N=%lld K=%lld A=%s/%s B=%s/%s C=%s/%s acc=%d par=%d",
             t->mode == EMK_MM_BF16 ? "BF16" : "EXACT", (long long)t->M, (long long)t->N,
             (long long)t->K, tname(t->ta), kind_name[t->ka], tname(t->tb), kind_name[t->kb],
             tname(t->tc), kind_name[t->kc], t->accumulate, t->parallel);
}

typedef struct {
    view_t va, vb, vc;
    buf_t a, b, c0; /* inputs; c0 = C before the call */
} operands_t;

static operands_t make_operands(const case_t *t)
{
    operands_t o;
    o.va = make_view(t->M, t->K, t->ka);
    o.vb = make_view(t->K, t->N, t->kb);
    o.vc = make_view(t->M, t->N, t->kc);
    o.a = buf_new(t->ta, o.va.len);
    o.b = buf_new(t->tb, o.vb.len);
    o.c0 = buf_new(t->tc, o.vc.len);
    fill_view(&o.a, &o.va);
    fill_view(&o.b, &o.vb);
    fill_view(&o.c0, &o.vc);
    if (!t->accumulate)
        for (int64_t i = 0; i < t->M; i++)
            for (int64_t j = 0; j < t->N; j++)
                buf_set(&o.c0, at(&o.vc, i, j), NAN);
    return o;
}

static void free_operands(operands_t *o) { free(o->a.p), free(o->b.p), free(o->c0.p); }

static int use_nohw; /* call emk_gemm_nohw (the copy above) instead of emk_gemm */

/* runs emk_gemm on the operands (optionally rows [i0, i0 + m), columns [j0, j0 + n)) into c */
static void call(const case_t *t, const operands_t *o, buf_t *c, int64_t i0, int64_t m, int64_t j0,
                 int64_t n, int parallel)
{
    size_t ea = t->ta == EMK_BF16 ? 2 : 4, eb = t->tb == EMK_BF16 ? 2 : 4, ec = t->tc == EMK_BF16 ? 2 : 4;
    (use_nohw ? emk_gemm_nohw : emk_gemm)(m, n, t->K, (char *)o->a.p + (size_t)(o->va.origin + i0 * o->va.rs) * ea, t->ta,
             o->va.rs, o->va.cs, (char *)o->b.p + (size_t)(o->vb.origin + j0 * o->vb.cs) * eb, t->tb,
             o->vb.rs, o->vb.cs, (char *)c->p + (size_t)(o->vc.origin + i0 * o->vc.rs + j0 * o->vc.cs) * ec,
             t->tc, o->vc.rs, o->vc.cs, t->accumulate, t->mode, parallel);
}

/* float64 reference check of c (after the call); returns 1 if every element is within tolerance */
static int check_reference(const case_t *t, const operands_t *o, const buf_t *c, char *why, size_t n)
{
    const double eps = FLT_EPSILON;
    char *in_view = calloc((size_t)o->vc.len, 1);
    for (int64_t i = 0; i < t->M; i++)
        for (int64_t j = 0; j < t->N; j++) {
            double sum = 0, mag = 0;
            for (int64_t k = 0; k < t->K; k++) {
                double p = seen(&o->a, at(&o->va, i, k), t->mode) * seen(&o->b, at(&o->vb, k, j), t->mode);
                sum += p, mag += fabs(p);
            }
            int64_t off = at(&o->vc, i, j);
            in_view[off] = 1;
            if (t->accumulate) {
                double c0 = buf_get(&o->c0, off);
                sum += c0, mag += fabs(c0);
            }
            double tol = 2.0 * (double)(t->K + 2) * eps * mag + 1e-30;
            if (t->tc == EMK_BF16)
                tol += 0x1p-8 * (fabs(sum) + tol);
            double got = buf_get(c, off);
            if (!(fabs(got - sum) <= tol)) {
                snprintf(why, n, "at (%lld,%lld): got %.9g want %.9g tol %.3g", (long long)i,
                         (long long)j, got, sum, tol);
                free(in_view);
                return 0;
            }
        }
    for (int64_t x = 0; x < o->vc.len; x++)
        if (!in_view[x] && buf_get(c, x) != buf_get(&o->c0, x)) {
            snprintf(why, n, "element %lld outside the C view changed", (long long)x);
            free(in_view);
            return 0;
        }
    free(in_view);
    return 1;
}

/* EXACT: emk_sgemm on widened f32 copies of the same views, C rounded if bf16 */
static buf_t exact_expected(const case_t *t, const operands_t *o)
{
    buf_t fa = buf_new(EMK_F32, o->a.len), fb = buf_new(EMK_F32, o->b.len), fc = buf_new(EMK_F32, o->c0.len);
    for (int64_t x = 0; x < o->a.len; x++) buf_set(&fa, x, buf_get(&o->a, x));
    for (int64_t x = 0; x < o->b.len; x++) buf_set(&fb, x, buf_get(&o->b, x));
    for (int64_t x = 0; x < o->c0.len; x++) buf_set(&fc, x, buf_get(&o->c0, x));
    emk_sgemm(t->M, t->N, t->K, (float *)fa.p + o->va.origin, o->va.rs, o->va.cs,
              (float *)fb.p + o->vb.origin, o->vb.rs, o->vb.cs, (float *)fc.p + o->vc.origin,
              o->vc.rs, o->vc.cs, t->accumulate, 0);
    buf_t c = buf_clone(&o->c0);
    for (int64_t i = 0; i < t->M; i++)
        for (int64_t j = 0; j < t->N; j++)
            buf_set(&c, at(&o->vc, i, j), buf_get(&fc, at(&o->vc, i, j)));
    free(fa.p), free(fb.p), free(fc.p);
    return c;
}

/* One case: reference, then the bitwise properties. */
static void run_case(const case_t *t)
{
    char name[256], why[256] = "";
    describe(t, name, sizeof name);
    operands_t o = make_operands(t);
    buf_t c = buf_clone(&o.c0);
    call(t, &o, &c, 0, t->M, 0, t->N, t->parallel);
    int ok = check_reference(t, &o, &c, why, sizeof why);
    TH_CHECK(ok, "%s: reference %s", name, why);

    if (t->mode == EMK_MM_EXACT) {
        buf_t e = exact_expected(t, &o);
        TH_CHECK(same_bits(&c, &e), "%s: EXACT differs from emk_sgemm on widened copies", name);
        free(e.p);
    } else {
        /* thread count */
        buf_t c2 = buf_clone(&o.c0);
        call(t, &o, &c2, 0, t->M, 0, t->N, t->parallel ? 0 : 2);
        TH_CHECK(same_bits(&c, &c2), "%s: parallel=%d differs", name, t->parallel ? 0 : 2);
        free(c2.p);
        /* portable (emulated) kernels, then the build without avx512_bf16 */
        if (emk_gemm_bf16_has_hw()) {
            buf_t c3 = buf_clone(&o.c0);
            emk_gemm_bf16_force_portable(1);
            call(t, &o, &c3, 0, t->M, 0, t->N, t->parallel);
            emk_gemm_bf16_force_portable(0);
            TH_CHECK(same_bits(&c, &c3), "%s: portable path differs from vdpbf16ps", name);
            free(c3.p);
        }
        buf_t c7 = buf_clone(&o.c0);
        use_nohw = 1;
        call(t, &o, &c7, 0, t->M, 0, t->N, t->parallel);
        use_nohw = 0;
        TH_CHECK(same_bits(&c, &c7), "%s: the build without avx512_bf16 differs", name);
        free(c7.p);
        /* f32 operands vs the same values rounded to bf16 beforehand */
        if (t->ta == EMK_F32 || t->tb == EMK_F32) {
            case_t u = *t;
            u.ta = u.tb = EMK_BF16;
            operands_t r = o;
            r.a = buf_new(EMK_BF16, o.a.len), r.b = buf_new(EMK_BF16, o.b.len);
            for (int64_t x = 0; x < o.a.len; x++) buf_set(&r.a, x, buf_get(&o.a, x));
            for (int64_t x = 0; x < o.b.len; x++) buf_set(&r.b, x, buf_get(&o.b, x));
            buf_t c4 = buf_clone(&o.c0);
            call(&u, &r, &c4, 0, t->M, 0, t->N, t->parallel);
            TH_CHECK(same_bits(&c, &c4), "%s: f32 operands differ from pre-rounded bf16 ones", name);
            free(c4.p), free(r.a.p), free(r.b.p);
        }
    }
    /* slicing: rows one (M <= 12) or three at a time, then two column halves */
    if (t->M > 0 && t->N > 0) {
        buf_t c5 = buf_clone(&o.c0);
        int64_t step = t->M <= 12 ? 1 : 3;
        for (int64_t i = 0; i < t->M; i += step)
            call(t, &o, &c5, i, t->M - i < step ? t->M - i : step, 0, t->N, t->parallel);
        TH_CHECK(same_bits(&c, &c5), "%s: rows %lld at a time differ", name, (long long)step);
        buf_t c6 = buf_clone(&o.c0);
        int64_t h = t->N / 2;
        call(t, &o, &c6, 0, t->M, 0, h, t->parallel);
        call(t, &o, &c6, 0, t->M, h, t->N - h, t->parallel);
        TH_CHECK(same_bits(&c, &c6), "%s: column halves differ", name);
        free(c5.p), free(c6.p);
    }
    free(c.p);
    free_operands(&o);
}

/* A sweep of shapes x layouts x types x modes. */
static void sweep(void)
{
    static const int64_t shapes[][3] = {
        {0, 5, 7},   {5, 0, 7},    {4, 6, 0},    {1, 1, 1},    {1, 17, 1},   {2, 3, 2},
        {3, 33, 31}, {4, 49, 33},  {1, 100, 65}, {5, 47, 3},   {8, 48, 32},  {9, 49, 63},
        {17, 97, 64}, {13, 20, 129}, {40, 50, 17}, {64, 96, 96},
    };
    static const emk_type types[][3] = {
        {EMK_F32, EMK_F32, EMK_F32},  {EMK_BF16, EMK_BF16, EMK_F32}, {EMK_F32, EMK_BF16, EMK_F32},
        {EMK_BF16, EMK_F32, EMK_BF16}, {EMK_BF16, EMK_BF16, EMK_BF16},
    };
    static const enum view_kind lay[][3] = {
        {ROW_MAJOR, ROW_MAJOR, ROW_MAJOR}, {ROW_MAJOR, COL_MAJOR, ROW_MAJOR}, /* nn, nt */
        {COL_MAJOR, ROW_MAJOR, ROW_MAJOR},                                    /* tn */
        {STRIDED, COL_PADDED, FLIPPED},    {FLIPPED, STRIDED, COL_MAJOR},
    };
    int n = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++)
            for (size_t l = 0; l < sizeof lay / sizeof lay[0]; l++)
                for (int mode = 0; mode < 2; mode++) {
                    n++;
                    case_t t = {shapes[s][0], shapes[s][1], shapes[s][2], lay[l][0], lay[l][1], lay[l][2],
                                types[ty][0], types[ty][1], types[ty][2], (emk_mm_mode)mode,
                                n % 3 == 0, n % 2};
                    run_case(&t);
                }
}

/* Bigger shapes: several K blocks with an odd K, ragged edges, threads, both modes. */
static void big_cases(void)
{
    static const case_t cases[] = {
        {70, 150, 1100, ROW_MAJOR, ROW_MAJOR, ROW_MAJOR, EMK_F32, EMK_F32, EMK_F32, EMK_MM_BF16, 0, 1},
        {70, 150, 1025, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_F32, EMK_BF16, EMK_F32, EMK_MM_BF16, 1, 1},
        {150, 70, 777, COL_MAJOR, ROW_MAJOR, ROW_MAJOR, EMK_BF16, EMK_F32, EMK_BF16, EMK_MM_BF16, 1, 1},
        {3, 200, 1537, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_F32, EMK_BF16, EMK_F32, EMK_MM_BF16, 0, 1},
        {4, 130, 1025, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_BF16, EMK_BF16, EMK_BF16, EMK_MM_BF16, 1, 1},
        {1, 300, 999, STRIDED, COL_MAJOR, FLIPPED, EMK_F32, EMK_F32, EMK_BF16, EMK_MM_BF16, 1, 1},
        /* small M against a row-major B (no packing: attention's weights @ values), ragged 64-column
           groups, odd K over three K blocks */
        {3, 130, 1025, ROW_MAJOR, ROW_MAJOR, FLIPPED, EMK_BF16, EMK_F32, EMK_BF16, EMK_MM_BF16, 1, 1},
        {1, 70, 777, STRIDED, ROW_MAJOR, ROW_MAJOR, EMK_F32, EMK_BF16, EMK_F32, EMK_MM_BF16, 0, 1},
        {70, 150, 1100, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_BF16, EMK_BF16, EMK_F32, EMK_MM_EXACT, 0, 1},
        {150, 70, 777, COL_MAJOR, ROW_MAJOR, ROW_MAJOR, EMK_BF16, EMK_F32, EMK_BF16, EMK_MM_EXACT, 1, 1},
        {3, 200, 1537, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_F32, EMK_BF16, EMK_F32, EMK_MM_EXACT, 1, 1},
        {4, 130, 1030, ROW_MAJOR, COL_MAJOR, STRIDED, EMK_BF16, EMK_BF16, EMK_BF16, EMK_MM_EXACT, 0, 1},
        {2, 64, 700, FLIPPED, COL_MAJOR, ROW_MAJOR, EMK_BF16, EMK_F32, EMK_F32, EMK_MM_EXACT, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* Calls from inside an OpenMP region (each thread its own product) equal serial calls. */
static void nested_parallel(void)
{
    case_t t = {33, 70, 130, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_F32, EMK_BF16, EMK_F32, EMK_MM_BF16, 0, 1};
    operands_t o = make_operands(&t);
    buf_t ref = buf_clone(&o.c0);
    call(&t, &o, &ref, 0, t.M, 0, t.N, 0);
    buf_t outs[4];
    for (int r = 0; r < 4; r++)
        outs[r] = buf_clone(&o.c0);
#pragma omp parallel for num_threads(2)
    for (int r = 0; r < 4; r++)
        call(&t, &o, &outs[r], 0, t.M, 0, t.N, 1);
    int ok = 1;
    for (int r = 0; r < 4; r++)
        ok &= same_bits(&ref, &outs[r]), free(outs[r].p);
    TH_CHECK(ok, "emk_gemm inside an OpenMP region differs from a serial call");
    free(ref.p);
    free_operands(&o);
}

/* vdpbf16ps semantics the portable path must reproduce: bf16 denormal inputs read as zero,
   tiny results (after rounding, unbounded exponent) flushed to signed zero. One column, K = 2:
   C = a0 b0 + a1 b1 computed as (0 + a1 b1) + a0 b0. */
static float dp_once(float a0, float b0, float a1, float b1, float c, int portable, int row_of_4)
{
    float A[8] = {a0, a1, a0, a1, a0, a1, a0, a1}, B[2] = {b0, b1}, C[4] = {c, c, c, c};
    emk_gemm_bf16_force_portable(portable);
    /* M = 1 and M = 4 rows against B^T (rsb == 1): the small-M path (the packed path is checked
       below with 9 rows) */
    emk_gemm(row_of_4 ? 4 : 1, 1, 2, A, EMK_F32, 2, 1, B, EMK_F32, 1, 1, C, EMK_F32, 1, 1, 1,
             EMK_MM_BF16, 0);
    emk_gemm_bf16_force_portable(0);
    return C[0];
}

static void denormal_semantics(void)
{
    if (!emk_gemm_bf16_has_hw()) {
        printf("no avx512_bf16 in this build: vdpbf16ps denormal checks skipped\n");
        return;
    }
    const float v[][5] = {
        {1e-20f, 1e-20f, 0, 0, 0},          /* denormal product */
        {1e-20f, 1e-20f, 1e-20f, 1e-20f, 0},
        {1e-19f, 1e-19f, 0, 0, 0},          /* 1e-38: below FLT_MIN */
        {1e-39f, 1e10f, 0, 0, 0},           /* bf16 denormal input */
        /* FLT_MIN (2^-63 * 2^-63) first, then minus 2^-151 (a tie: stays FLT_MIN), 2^-150
           (tiny after rounding: flushed although fmaf gives FLT_MIN), 1.5 * 2^-150 */
        {0x1p-75f, -0x1p-76f, 0x1p-63f, 0x1p-63f, 0},
        {0x1p-75f, -0x1p-75f, 0x1p-63f, 0x1p-63f, 0},
        {0x1p-75f, -0x1.8p-75f, 0x1p-63f, 0x1p-63f, 0},
        {-0x1p-75f, 0x1p-75f, -0x1p-63f, 0x1p-63f, 0},
        {3, 4, 5, 6, 0},
        {-1e-20f, 1e-20f, 1e-20f, 1e-20f, 0},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (int c = 0; c < 2; c++)
            for (int r4 = 0; r4 < 2; r4++) {
                float cc = c ? 1.5f : 0.0f;
                float hw = dp_once(v[i][0], v[i][1], v[i][2], v[i][3], cc, 0, r4);
                float sw = dp_once(v[i][0], v[i][1], v[i][2], v[i][3], cc, 1, r4);
                if (memcmp(&hw, &sw, 4)) {
                    printf("  denormal case %zu (c=%g): hw %a portable %a\n", i, cc, hw, sw);
                    ok = 0;
                }
            }
    TH_CHECK(ok, "portable path reproduces vdpbf16ps denormal handling");
    /* the packed path (M = 9 rows) and the small-M path (M = 3) on tiny values, f32 denormal
       operands included, both packing directions: hw vs portable kernels vs the build without
       avx512_bf16 */
    for (int v = 0; v < 4; v++) {
        enum view_kind k = v & 1 ? COL_MAJOR : ROW_MAJOR;
        case_t t = {v & 2 ? 3 : 9, 50, 40, k, k, ROW_MAJOR, EMK_F32, EMK_F32, EMK_F32, EMK_MM_BF16, 0, 0};
        operands_t o = make_operands(&t);
        for (int64_t x = 0; x < o.a.len; x++) buf_set(&o.a, x, buf_get(&o.a, x) * (x % 5 ? 1e-19 : 1e-39));
        for (int64_t x = 0; x < o.b.len; x++) buf_set(&o.b, x, buf_get(&o.b, x) * (x % 3 ? 1e-19 : 1e-40));
        buf_t c1 = buf_clone(&o.c0), c2 = buf_clone(&o.c0), c3 = buf_clone(&o.c0);
        call(&t, &o, &c1, 0, t.M, 0, t.N, 0);
        emk_gemm_bf16_force_portable(1);
        call(&t, &o, &c2, 0, t.M, 0, t.N, 0);
        emk_gemm_bf16_force_portable(0);
        use_nohw = 1;
        call(&t, &o, &c3, 0, t.M, 0, t.N, 0);
        use_nohw = 0;
        TH_CHECK(same_bits(&c1, &c2), "tiny values, M=%lld, %s: portable kernels equal vdpbf16ps",
                 (long long)t.M, kind_name[k]);
        TH_CHECK(same_bits(&c1, &c3), "tiny values, M=%lld, %s: build without avx512_bf16 equals vdpbf16ps",
                 (long long)t.M, kind_name[k]);
        free(c1.p), free(c2.p), free(c3.p);
        free_operands(&o);
    }
    /* f32 operands just below FLT_MIN (which emt_f32_to_bf16 would round up to FLT_MIN) count as
       zero, as vcvtne2ps2bf16 flushes them: C = 0 exactly, on every path */
    for (int v = 0; v < 4; v++) {
        enum view_kind k = v & 1 ? COL_MAJOR : ROW_MAJOR;
        case_t t = {v & 2 ? 2 : 10, 20, 7, k, k, ROW_MAJOR, EMK_F32, EMK_F32, EMK_F32, EMK_MM_BF16, 0, 0};
        operands_t o = make_operands(&t);
        for (int64_t i = 0; i < t.M; i++)
            for (int64_t q = 0; q < t.K; q++)
                buf_set(&o.a, at(&o.va, i, q), (i + q) % 2 ? 0x1.ffcp-127 : -0x1.ffcp-127);
        for (int64_t q = 0; q < t.K; q++)
            for (int64_t j = 0; j < t.N; j++)
                buf_set(&o.b, at(&o.vb, q, j), 1.0 + 0.1 * (double)j);
        int ok = 1;
        for (int path = 0; path < 3; path++) {
            buf_t c = buf_clone(&o.c0);
            emk_gemm_bf16_force_portable(path == 1);
            use_nohw = path == 2;
            call(&t, &o, &c, 0, t.M, 0, t.N, 0);
            emk_gemm_bf16_force_portable(0);
            use_nohw = 0;
            for (int64_t i = 0; i < t.M; i++)
                for (int64_t j = 0; j < t.N; j++)
                    ok &= buf_get(&c, at(&o.vc, i, j)) == 0.0;
            free(c.p);
        }
        TH_CHECK(ok, "f32 operands in (FLT_MIN (1 - 2^-9), FLT_MIN) count as zero, M=%lld, %s",
                 (long long)t.M, kind_name[k]);
        free_operands(&o);
    }
}

/* NaN and infinity propagate to exactly the rows / columns they touch. */
static void nan_propagation(void)
{
    for (int mode = 0; mode < 2; mode++)
        for (int m = 1; m <= 9; m += 8) {
            case_t t = {m, 40, 33, ROW_MAJOR, COL_MAJOR, ROW_MAJOR, EMK_F32, EMK_BF16, EMK_F32,
                        (emk_mm_mode)mode, 0, 0};
            operands_t o = make_operands(&t);
            buf_set(&o.a, at(&o.va, 0, 5), NAN);
            buf_set(&o.b, at(&o.vb, 7, 3), INFINITY);
            buf_t c = buf_clone(&o.c0);
            call(&t, &o, &c, 0, t.M, 0, t.N, 0);
            int ok = 1;
            for (int64_t i = 0; i < t.M; i++)
                for (int64_t j = 0; j < t.N; j++) {
                    double x = buf_get(&c, at(&o.vc, i, j));
                    int want_nan = i == 0, want_inf = !want_nan && j == 3;
                    ok &= want_nan ? isnan(x) : want_inf ? isinf(x) : isfinite(x);
                }
            TH_CHECK(ok, "mode %d M=%d: NaN/Inf propagate to their row/column only", mode, m);
            free(c.p);
            free_operands(&o);
        }
}

int main(void)
{
    th_seed(20240611);
    printf("avx512_bf16 kernels: %s\n", emk_gemm_bf16_has_hw() ? "yes" : "no (portable only)");
    sweep();
    big_cases();
    nested_parallel();
    denormal_semantics();
    nan_propagation();
    return th_summary();
}

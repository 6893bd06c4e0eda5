/* random.c - the counter-based generator: Philox 4x32-10 (Salmon et al., SC'11).
 *
 * The global generator is just (seed, offset). A random op of n elements reserves counters
 * [offset, offset + n) and element i is a pure function of (seed, offset + i), so the numbers
 * do not depend on thread count, on the order of evaluation, or on which backend computes them;
 * the compiler and the GPU backend re-derive them from the (seed, offset) stored in the op.
 *
 * Normals in float (emt_normal_fill_f32, what em_randn(EM_F32) and so model initialisation use)
 * take a fast path that gives the same floats as emt_normal_at: log and cos come from short
 * polynomials (vectorizable, no libm call) whose double result is within FAST_ERR of libm's; an
 * element whose float rounding could differ (the fast value within FAST_ERR of a rounding
 * boundary: about one in 10^5) is recomputed with libm. The result is bit-identical by
 * construction; tests/test_tensor.c compares millions of elements against emt_normal_at.
 */
#include "tensor.h"

#include <math.h>
#include <string.h>

static uint64_t g_seed = 0x5eed, g_offset;

void em_manual_seed(uint64_t seed) { g_seed = seed; g_offset = 0; }
uint64_t em_rng_seed(void) { return g_seed; }
uint64_t em_rng_offset(void) { return g_offset; }
void em_rng_set_state(uint64_t seed, uint64_t offset) { g_seed = seed; g_offset = offset; }

uint64_t emt_rng_reserve(uint64_t n, uint64_t *seed) {
    uint64_t first = g_offset;
    g_offset += n;
    *seed = g_seed;
    return first;
}

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void emt_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(0xD2511F53u, c0, &hi0, &lo0);
        mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

double emt_normal_at(uint64_t seed, uint64_t ctr) {
    uint32_t r[4];
    emt_philox(seed, ctr, r);
    double u1 = ((double)r[0] + 1.0) * (1.0 / 4294967296.0); /* (0, 1] */
    double u2 = (double)r[1] * (1.0 / 4294967296.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- the float fast path ------------------------------------------------------------------------- */
/* |fast - libm| is below 1e-15 * (1 + |value|) for each factor (series truncation below 1e-17,
   a few double roundings); the product's bound is taken 50x wider */
#define FAST_ERR 5e-14

/* log(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) */
static inline double fast_log(double u) {
    uint64_t b;
    memcpy(&b, &u, 8);
    double de = (double)((int64_t)((b >> 52) & 0x7ff) - 1023);
    uint64_t mb = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m;
    memcpy(&m, &mb, 8);
    bool big = m > 1.4142135623730951; /* selects on doubles only (vectorizes) */
    m = big ? m * 0.5 : m;
    de = big ? de + 1.0 : de;
    double s = (m - 1.0) / (m + 1.0), z = s * s; /* |s| <= 0.1716 */
    double p = 1.0 / 23;
    p = p * z + 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    double lm = 2.0 * s + 2.0 * s * z * p;
    return de * 6.93147180369123816490e-01 + (de * 1.90821492927058770002e-10 + lm); /* ln 2 = hi + lo */
}

/* cos(t) for t in [0, 2 pi): t = k pi/2 + y, |y| <= pi/4, then +-cos y or +-sin y */
static inline double fast_cos(double t) {
    /* k = round(t 2/pi) in {0, .., 4}: adding and removing 1.5 * 2^52 rounds (floor does not
       vectorize under -ftrapping-math) */
    double k = (t * 0.63661977236758134308 + 6755399441055744.0) - 6755399441055744.0;
    double y = (t - k * 1.57079632673412561417e+00) - k * 6.07710050650619224932e-11; /* pi/2 = hi + lo */
    double z = y * y;
    double c = 1.0 / 20922789888000.0; /* cos: 1 - z/2! + ... - z^8/16! */
    c = c * z - 1.0 / 87178291200.0;
    c = c * z + 1.0 / 479001600.0;
    c = c * z - 1.0 / 3628800.0;
    c = c * z + 1.0 / 40320.0;
    c = c * z - 1.0 / 720.0;
    c = c * z + 1.0 / 24.0;
    c = c * z - 0.5;
    c = c * z + 1.0;
    double sn = -1.0 / 355687428096000.0; /* sin: y - y^3/3! + ... */
    sn = sn * z + 1.0 / 1307674368000.0;
    sn = sn * z - 1.0 / 6227020800.0;
    sn = sn * z + 1.0 / 39916800.0;
    sn = sn * z - 1.0 / 362880.0;
    sn = sn * z + 1.0 / 5040.0;
    sn = sn * z - 1.0 / 120.0;
    sn = sn * z + 1.0 / 6.0;
    sn = y - y * z * sn;
    double q = k == 4.0 ? 0.0 : k; /* k mod 4 */
    double v = fabs(q - 2.0) == 1.0 ? sn : c; /* q = 1, 3 (one compare each: vectorizes) */
    return fabs(q - 1.5) < 1.0 ? -v : v;      /* q = 1, 2 */
}

/* v[i] = the fast value of element ctr0 + i (in blocks, so the loop vectorizes) */
static void normal_block(uint64_t seed, uint64_t ctr0, int64_t n, double *restrict v) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t ctr = ctr0 + (uint64_t)i; /* emt_philox's words 0 and 1, in scalars (vectorizes) */
        uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int r = 0; r < 10; r++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint32_t)p1;
            c3 = (uint32_t)p0;
            c0 = n0;
            c2 = n2;
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        double u1 = ((double)(int64_t)c0 + 1.0) * (1.0 / 4294967296.0);
        double u2 = (double)(int64_t)c1 * (1.0 / 4294967296.0);
        v[i] = sqrt(-2.0 * fast_log(u1)) * fast_cos(6.283185307179586 * u2);
    }
}

int64_t emt_normal_fill_f32(uint64_t seed, uint64_t ctr0, int64_t n, float *out) {
    int64_t slow = 0;
#pragma omp parallel for schedule(static) num_threads(emb_num_threads()) if (n > 16384) reduction(+ : slow)
    for (int64_t b = 0; b < n; b += 1024) {
        int64_t e = b + 1024 < n ? b + 1024 : n;
        double v[1024];
        normal_block(seed, ctr0 + (uint64_t)b, e - b, v);
        for (int64_t i = b; i < e; i++) {
            double d = v[i - b], err = FAST_ERR * (1.0 + fabs(d));
            float f = (float)d;
            if ((float)(d - err) != f || (float)(d + err) != f) {
                f = (float)emt_normal_at(seed, ctr0 + (uint64_t)i);
                slow++;
            }
            out[i] = f;
        }
    }
    return slow;
}

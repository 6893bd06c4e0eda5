/* random.c - the counter-based generator: Philox 4x32-10 (Salmon et al., SC'11).
 *
 * The global generator is just (seed, offset). A random op of n elements reserves counters
 * [offset, offset + n) and element i is a pure function of (seed, offset + i), so the numbers
 * do not depend on thread count, on the order of evaluation, or on which backend computes them;
 * the compiler and the GPU backend re-derive them from the (seed, offset) stored in the op.
 */
#include "tensor.h"

#include <math.h>

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

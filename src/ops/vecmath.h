/* vecmath.h - f32 math that vectorizes, shared by the eager kernels.
 *
 * glibc's expf/logf/tanhf/erff are scalar calls (gcc vectorizes them only through libmvec under
 * -ffast-math, which Ember does not use), so hot f32 loops call these branch-free versions
 * instead. All are within a few ulp and handle NaN, +-inf, overflow and underflow like libm.
 * The generated code of the compiler will use the same formulas, so eager and compiled results
 * agree.
 */
#ifndef EMBER_VECMATH_H
#define EMBER_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float f32_of_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t bits_of_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* e^x = 2^n e^r with n = round(x / ln 2), |r| <= ln2 / 2 (ln 2 split in two for an exact r),
   e^r by Cephes' expf polynomial; 2^n is applied as two halves so overflow gives inf and
   results down to the subnormals are right */
static inline float exp_f32(float x) {
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    float t = xc * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
    float nf = t - 12582912.0f;
    int32_t n = (int32_t)(bits_of_f32(t) - 0x4B400000u); /* that integer, read from the bits */
    float r = xc - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t n1 = n / 2, n2 = n - n1;
    y = y * f32_of_bits((uint32_t)(n1 + 127) << 23) * f32_of_bits((uint32_t)(n2 + 127) << 23);
    return x != x ? x : y;
}

/* Cephes' tanhf: an odd polynomial below 0.625, 1 - 2 / (e^2|x| + 1) above */
static inline float tanh_f32(float x) {
    float ax = fabsf(x), z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = x == 0 ? x : x + x * z * p; /* keeps -0 */
    float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
    big = x < 0 ? -big : big;
    return ax < 0.625f ? small : big;
}

/* gelu through erfc, which keeps the negative tail accurate: erfc(z) for z >= 0 by the
   Chebyshev fit of Numerical Recipes (relative error < 1.2e-7) */
static inline float erfc_pos_f32(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * exp_f32(p - z * z);
}
static inline float gelu_f32(float x) {
    float e = erfc_pos_f32(fabsf(x) * (float)M_SQRT1_2);
    return x < 0 ? 0.5f * x * e : x * (1.0f - 0.5f * e);
}

/* Cephes' logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a polynomial in m - 1;
   subnormal inputs are scaled up first */
static inline float log_f32(float x) {
    int sub = x < 1.17549435e-38f; /* also true for zero and negatives, handled at the end */
    uint32_t u = bits_of_f32(sub ? x * 8388608.0f : x);
    int32_t e = (int32_t)((u >> 23) & 0xff) - 126 - (sub ? 23 : 0);
    float m = f32_of_bits((u & 0x007fffffu) | 0x3f000000u); /* [0.5, 1) */
    int below = m < 0.707106781186547524f;
    e = below ? e - 1 : e;
    m = below ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    /* (float)e through the bits of 1.5 * 2^23 + e: gcc will not if-convert an int-to-float
       conversion (it "could trap"), and the selects below need the loop if-converted */
    float fe = f32_of_bits(0x4B400000u + (uint32_t)e) - 12582912.0f;
    float y = m * z * p + fe * -2.12194440e-4f - 0.5f * z;
    y = m + y + fe * 0.693359375f;
    y = x == 0 ? -INFINITY : y; /* one select each, so the loop stays branch-free */
    y = x < 0 ? NAN : y;
    y = x == INFINITY ? x : y;
    return x != x ? x : y;
}

#endif

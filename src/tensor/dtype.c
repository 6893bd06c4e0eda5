/* dtype.c - element types: sizes, names, conversions and PyTorch's promotion rules.
 *
 * f16 and bf16 are stored as uint16_t bit patterns and converted in software (round to
 * nearest even), so results do not depend on the CPU having F16C or AVX512-BF16. Everything
 * that loads "one element of any dtype" goes through emt_load/emt_store (double), which is
 * exact for every dtype but i64 beyond 2^53; integer paths use emt_load_i64.
 */
#include "tensor.h"

#include <math.h>

static const size_t sizes[EM_NUM_DTYPES] = {4, 8, 2, 2, 4, 8, 1, 1};
static const char *names[EM_NUM_DTYPES] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8", "bool"};

size_t em_dtype_size(em_dtype dt) { return (unsigned)dt < EM_NUM_DTYPES ? sizes[dt] : 0; }
const char *em_dtype_name(em_dtype dt) { return (unsigned)dt < EM_NUM_DTYPES ? names[dt] : "?"; }
bool em_dtype_is_float(em_dtype dt) { return emt_is_float(dt); }

float emt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t emt_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff);
    uint32_t man = u & 0x7fffff;
    if (exp == 255) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero in f16 */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exp: correct */
    return (uint16_t)half;
}

double emt_load(const void *p, em_dtype dt) {
    switch (dt) {
    case EM_F32: { float v; memcpy(&v, p, 4); return v; }
    case EM_F64: { double v; memcpy(&v, p, 8); return v; }
    case EM_F16: { uint16_t v; memcpy(&v, p, 2); return emt_f16_to_f32(v); }
    case EM_BF16: { uint16_t v; memcpy(&v, p, 2); return emt_bf16_to_f32(v); }
    case EM_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case EM_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case EM_U8: return *(const uint8_t *)p;
    case EM_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
    }
    return 0;
}

int64_t emt_load_i64(const void *p, em_dtype dt) {
    switch (dt) {
    case EM_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case EM_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case EM_U8: return *(const uint8_t *)p;
    case EM_BOOL: return *(const uint8_t *)p != 0;
    default: {
        double d = emt_load(p, dt);
        if (!(d == d)) return 0;
        if (d >= 9.2e18) return INT64_MAX;
        if (d <= -9.2e18) return INT64_MIN;
        return (int64_t)d;
    }
    }
}

/* float -> int conversions are undefined in C outside the target range; saturate instead */
static int64_t sat(double v, double lo, double hi) {
    if (!(v == v)) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

void emt_store(void *p, em_dtype dt, double v) {
    switch (dt) {
    case EM_F32: { float f = (float)v; memcpy(p, &f, 4); break; }
    case EM_F64: memcpy(p, &v, 8); break;
    case EM_F16: { uint16_t h = emt_f32_to_f16((float)v); memcpy(p, &h, 2); break; }
    case EM_BF16: { uint16_t h = emt_f32_to_bf16((float)v); memcpy(p, &h, 2); break; }
    case EM_I32: { int32_t i = (int32_t)sat(v, -2147483648.0, 2147483647.0); memcpy(p, &i, 4); break; }
    case EM_I64: { int64_t i = sat(v, -9223372036854775808.0, 9223372036854774784.0); memcpy(p, &i, 8); break; }
    case EM_U8: *(uint8_t *)p = (uint8_t)(sat(v, -1e18, 1e18) & 0xff); break; /* wraps like torch */
    case EM_BOOL: *(uint8_t *)p = v != 0; break;
    }
}

/* ---- promotion --------------------------------------------------------------------------- */
static int category(em_dtype d) { return d == EM_BOOL ? 0 : emt_is_int(d) ? 1 : 2; }

em_dtype em_promote_types(em_dtype a, em_dtype b) {
    if (a == b) return a;
    int ca = category(a), cb = category(b);
    if (ca != cb) return ca > cb ? a : b;
    if (ca == 2) {
        if (a == EM_F64 || b == EM_F64) return EM_F64;
        if (a == EM_F32 || b == EM_F32) return EM_F32;
        return EM_F32; /* f16 with bf16 */
    }
    if (ca == 1) {
        if (a == EM_I64 || b == EM_I64) return EM_I64;
        if (a == EM_I32 || b == EM_I32) return EM_I32;
        return EM_U8;
    }
    return EM_BOOL;
}

em_dtype emt_result_type(const em_dtype *dts, const int *ndims, int n) {
    /* dimensioned tensors decide unless a 0-dim one is of a higher category */
    int have_dim = 0, have_zero = 0;
    em_dtype dd = EM_BOOL, dz = EM_BOOL;
    for (int i = 0; i < n; i++) {
        if (ndims[i] > 0) {
            dd = have_dim ? em_promote_types(dd, dts[i]) : dts[i];
            have_dim = 1;
        } else {
            dz = have_zero ? em_promote_types(dz, dts[i]) : dts[i];
            have_zero = 1;
        }
    }
    if (!have_dim) return dz;
    if (!have_zero) return dd;
    return category(dz) > category(dd) ? dz : dd;
}

/* cases_shape.c - op cases for the shape group (see tests/lib/harness.h). */
#include "harness.h"

const th_case th_cases_shape[] = {
    {0},
};

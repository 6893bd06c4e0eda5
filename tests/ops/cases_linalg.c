/* cases_linalg.c - op cases for the linalg group (see tests/lib/harness.h). */
#include "harness.h"

const th_case th_cases_linalg[] = {
    {0},
};

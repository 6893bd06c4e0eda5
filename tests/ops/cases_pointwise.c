/* cases_pointwise.c - op cases for the pointwise group (see tests/lib/harness.h). */
#include "harness.h"

const th_case th_cases_pointwise[] = {
    {0},
};

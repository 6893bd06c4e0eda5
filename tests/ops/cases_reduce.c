/* cases_reduce.c - op cases for the reduce group (see tests/lib/harness.h). */
#include "harness.h"

const th_case th_cases_reduce[] = {
    {0},
};

/* cases_nn.c - op cases for the nn group (see tests/lib/harness.h). */
#include "harness.h"

const th_case th_cases_nn[] = {
    {0},
};

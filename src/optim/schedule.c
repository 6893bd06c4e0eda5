/* schedule.c - learning-rate schedules: plain functions of the step, so a training loop calls
 * one and passes the result to em_optimizer_set_lr.
 *
 * em_lr_cosine is llm.c's: a linear warm-up that reaches max_lr at step warmup - 1, then a
 * half-cosine from max_lr (at step warmup) down to min_lr (at step max_steps), then min_lr.
 */
#include "optim.h"

#include <math.h>

double em_lr_cosine(int64_t step, int64_t warmup, int64_t max_steps, double max_lr, double min_lr) {
    if (step < 0) step = 0;
    if (step < warmup) return max_lr * (double)(step + 1) / (double)warmup;
    if (step >= max_steps) return min_lr;
    double r = (double)(step - warmup) / (double)(max_steps - warmup); /* in [0, 1) */
    return min_lr + 0.5 * (1.0 + cos(M_PI * r)) * (max_lr - min_lr);
}

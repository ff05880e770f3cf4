/* A tiny test harness for fp's C unit tests: CHECK macros count passes and failures and print
 * each failure as file:line and the expression; check_summary() prints "N passed, N failed"
 * and gives the exit status. One test binary = one .c file including this header once. */
#ifndef FP_CHECK_H
#define FP_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed;
static int check_failed;

static inline void check_record(int ok, const char *file, int line, const char *expr)
{
    if (ok) {
        check_passed++;
        return;
    }
    check_failed++;
    fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, expr);
}

#define CHECK(cond) check_record((cond) ? 1 : 0, __FILE__, __LINE__, #cond)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        check_record(check_a_ == check_b_, __FILE__, __LINE__, #a " == " #b);                      \
        if (check_a_ != check_b_)                                                                  \
            fprintf(stderr, "    left:  %lld\n    right: %lld\n", check_a_, check_b_);             \
    } while (0)

/* Compares two strings; NULL equals only NULL. */
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        int check_ok_ =                                                                            \
            (check_a_ && check_b_) ? strcmp(check_a_, check_b_) == 0 : check_a_ == check_b_;       \
        check_record(check_ok_, __FILE__, __LINE__, #a " == " #b);                                 \
        if (!check_ok_)                                                                            \
            fprintf(stderr, "    left:  %s\n    right: %s\n", check_a_ ? check_a_ : "(null)",      \
                    check_b_ ? check_b_ : "(null)");                                               \
    } while (0)

/* Prints the summary line; returns the process exit status (non-zero when anything failed). */
static inline int check_summary(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif

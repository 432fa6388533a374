/* Minimal test helpers: count failures, print where, keep going. */
#ifndef TCHECK_H
#define TCHECK_H

#include <stdio.h>

static int t_failures;
static int t_checks;

#define CHECK(cond)                                                                    \
	do {                                                                           \
		t_checks++;                                                            \
		if (!(cond)) {                                                         \
			t_failures++;                                                  \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                      \
	} while (0)

#define CHECK_EQ(a, b)                                                                  \
	do {                                                                            \
		long long _a = (long long)(a), _b = (long long)(b);                     \
		t_checks++;                                                             \
		if (_a != _b) {                                                         \
			t_failures++;                                                   \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
				__LINE__, #a, #b, _a, _b);                              \
		}                                                                       \
	} while (0)

#define T_DONE(name)                                                                    \
	do {                                                                            \
		printf("%s: %d checks, %d failures\n", name, t_checks, t_failures);     \
		return t_failures ? 1 : 0;                                              \
	} while (0)

#endif

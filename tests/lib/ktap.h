/* SPDX-License-Identifier: GPL-2.0 */
/* ktap.h - a small KTAP (TAP version 13) test harness for sluice's C tests: unit tests and lab programs. */
#ifndef SLUICE_TESTS_KTAP_H
#define SLUICE_TESTS_KTAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Outcome of one case; the exit codes of a whole program follow kselftest's. */
enum ktap_result {
	KTAP_PASS = 0,
	KTAP_FAIL = 1,
	KTAP_SKIP = 4,
};

struct ktap_case {
	const char *name;
	enum ktap_result (*fn)(void);
};

/* Why the current case skipped; set by KTAP_SKIP_IF(). */
static char ktap_skip_reason[256];

/* A diagnostic line, as KTAP allows: "# ...". */
static inline void ktap_diag(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static inline void ktap_diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* Fail the current case (return from it) unless @cond holds. */
#define KTAP_EXPECT(cond, ...)							\
	do {									\
		if (!(cond)) {							\
			ktap_diag("%s:%d: expected %s", __FILE__, __LINE__, #cond);	\
			ktap_diag(__VA_ARGS__);					\
			return KTAP_FAIL;					\
		}								\
	} while (0)

/* Fail the current case if @expr (a syscall-style call) returns < 0; reports errno. */
#define KTAP_SYSCALL(expr)							\
	do {									\
		if ((expr) < 0) {						\
			ktap_diag("%s:%d: %s: %s", __FILE__, __LINE__, #expr,	\
				  strerror(errno));				\
			return KTAP_FAIL;					\
		}								\
	} while (0)

#define KTAP_SKIP_IF(cond, ...)							\
	do {									\
		if (cond) {							\
			snprintf(ktap_skip_reason, sizeof(ktap_skip_reason),	\
				 __VA_ARGS__);					\
			return KTAP_SKIP;					\
		}								\
	} while (0)

/*
 * Run every case, print KTAP, return the kselftest exit code: 0 when all
 * passed (or some skipped and none failed), 1 on any failure, 4 when all skipped.
 */
static inline int ktap_run(const struct ktap_case *cases, size_t n)
{
	const char *only = getenv("KTAP_ONLY");	/* run only cases whose name contains it */
	size_t i, failed = 0, skipped = 0;

	printf("TAP version 13\n1..%zu\n", n);
	fflush(stdout);
	for (i = 0; i < n; i++) {
		enum ktap_result r;

		ktap_skip_reason[0] = '\0';
		if (only && *only && !strstr(cases[i].name, only)) {
			snprintf(ktap_skip_reason, sizeof(ktap_skip_reason), "not selected by KTAP_ONLY");
			r = KTAP_SKIP;
		} else {
			r = cases[i].fn();
		}
		if (r == KTAP_SKIP) {
			printf("ok %zu %s # SKIP %s\n", i + 1, cases[i].name,
			       ktap_skip_reason);
			skipped++;
		} else if (r == KTAP_PASS) {
			printf("ok %zu %s\n", i + 1, cases[i].name);
		} else {
			printf("not ok %zu %s\n", i + 1, cases[i].name);
			failed++;
		}
		fflush(stdout);
	}
	printf("# Totals: pass:%zu fail:%zu skip:%zu\n", n - failed - skipped,
	       failed, skipped);
	if (failed)
		return KTAP_FAIL;
	return skipped == n && n ? KTAP_SKIP : KTAP_PASS;
}

#define KTAP_MAIN(...)								\
	int main(void)								\
	{									\
		static const struct ktap_case ktap_cases[] = { __VA_ARGS__ };	\
		return ktap_run(ktap_cases,					\
				sizeof(ktap_cases) / sizeof(ktap_cases[0]));	\
	}

#define KTAP_CASE(fn) { #fn, fn }

#endif /* SLUICE_TESTS_KTAP_H */

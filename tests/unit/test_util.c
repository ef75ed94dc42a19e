// SPDX-License-Identifier: GPL-2.0
/* test_util.c - unit tests for sluice_parse_size() / sluice_format_size(). */
#include <errno.h>

#include "ktap.h"
#include "util.h"

static enum ktap_result parse_plain_and_suffixes(void)
{
	static const struct { const char *s; uint64_t v; } ok[] = {
		{ "0", 0 }, { "512", 512 }, { "512b", 512 }, { "4k", 4096 }, { "4K", 4096 },
		{ "1M", 1 << 20 }, { "2G", 2ULL << 30 }, { "1t", 1ULL << 40 }, { "1.5k", 1536 },
		{ "0.5M", 512 << 10 }, { "1.5G", 3ULL << 29 }, { "7E", 7ULL << 60 },
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = ~0ULL;
		int r = sluice_parse_size(ok[i].s, &v);

		KTAP_EXPECT(r == 0 && v == ok[i].v, "'%s' -> %d / %llu, expected %llu", ok[i].s, r,
			    (unsigned long long)v, (unsigned long long)ok[i].v);
	}
	return KTAP_PASS;
}

static enum ktap_result parse_rejects_garbage(void)
{
	static const char *const bad[] = { "", "k", "-1", "1x", "1kk", "1 k", "0x10", "1.5", ".", "abc" };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 77;

		KTAP_EXPECT(sluice_parse_size(bad[i], &v) == -EINVAL && v == 77,
			    "'%s' accepted or wrong error", bad[i]);
	}
	KTAP_EXPECT(sluice_parse_size(NULL, NULL) == -EINVAL, "NULL accepted");
	return KTAP_PASS;
}

static enum ktap_result parse_range(void)
{
	uint64_t v;

	KTAP_EXPECT(sluice_parse_size("8E", &v) == -ERANGE, "8E fits in 63 bits?");
	KTAP_EXPECT(sluice_parse_size("99999999999999999999999", &v) == -ERANGE, "overflow");
	KTAP_EXPECT(sluice_parse_size("9223372036854775807", &v) == 0 && v == INT64_MAX, "INT64_MAX");
	KTAP_EXPECT(sluice_parse_size("9223372036854775808", &v) == -ERANGE, "INT64_MAX + 1");
	return KTAP_PASS;
}

static enum ktap_result format_sizes(void)
{
	char buf[32];

	KTAP_EXPECT(!strcmp(sluice_format_size(0, buf, sizeof(buf)), "0 B"), "%s", buf);
	KTAP_EXPECT(!strcmp(sluice_format_size(1023, buf, sizeof(buf)), "1023 B"), "%s", buf);
	KTAP_EXPECT(!strcmp(sluice_format_size(1 << 30, buf, sizeof(buf)), "1 GiB"), "%s", buf);
	KTAP_EXPECT(!strcmp(sluice_format_size(3 << 19, buf, sizeof(buf)), "1.5 MiB"), "%s", buf);
	return KTAP_PASS;
}

KTAP_MAIN(KTAP_CASE(parse_plain_and_suffixes), KTAP_CASE(parse_rejects_garbage),
	  KTAP_CASE(parse_range), KTAP_CASE(format_sizes))

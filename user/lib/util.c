// SPDX-License-Identifier: GPL-2.0
/* util.c - small helpers shared by sluice's userspace: size parsing and formatting. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static int suffix_shift(char c)
{
	switch (tolower((unsigned char)c)) {
	case 'b': return 0;
	case 'k': return 10;
	case 'm': return 20;
	case 'g': return 30;
	case 't': return 40;
	case 'p': return 50;
	case 'e': return 60;
	default: return -1;
	}
}

int sluice_parse_size(const char *str, uint64_t *out)
{
	uint64_t whole = 0, frac_num = 0, frac_den = 1;
	const char *p = str;
	int shift = 0, digits = 0;

	if (!str)
		return -EINVAL;
	while (isdigit((unsigned char)*p)) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		whole = whole * 10 + (uint64_t)(*p++ - '0');
		digits++;
	}
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			if (frac_den < 1000000000000ULL) {
				frac_num = frac_num * 10 + (uint64_t)(*p - '0');
				frac_den *= 10;
			}
			p++;
			digits++;
		}
	}
	if (!digits)
		return -EINVAL;
	if (*p) {
		shift = suffix_shift(*p++);
		if (shift < 0 || *p)
			return -EINVAL;
	}
	if (frac_num && shift == 0)
		return -EINVAL; /* fractional bytes */
	if (shift && whole > ((uint64_t)INT64_MAX >> shift))
		return -ERANGE;
	whole <<= shift;
	if (frac_num) {
		/* frac_num / frac_den * 2^shift, exact for the binary suffixes */
		uint64_t f = (frac_num << (shift > 20 ? 20 : shift)) / frac_den;

		if (shift > 20)
			f <<= shift - 20;
		if (whole > (uint64_t)INT64_MAX - f)
			return -ERANGE;
		whole += f;
	}
	if (whole > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = whole;
	return 0;
}

char *sluice_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	unsigned int i = 0;

	while (v >= 1024 && i < sizeof(units) / sizeof(units[0]) - 1) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.3g %s", v, units[i]);
	return buf;
}

int sluice_pread_all(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = pread(fd, p, len > (1 << 30) ? 1 << 30 : len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

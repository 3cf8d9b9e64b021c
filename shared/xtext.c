/* xtext.c - see xtext.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "xtext.h"

static const char hexdig[] = "0123456789ABCDEF";

char *
sbx_xtext_encode(const char *s)
{
	size_t n = strlen(s), i, o = 0;
	char *out = sbx_xmalloc(n * 3 + 1);   /* @UNSAFE: at most 3 bytes per byte */

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			out[o++] = (char)c;
		} else {
			out[o++] = '+';
			out[o++] = hexdig[c >> 4];
			out[o++] = hexdig[c & 0xf];
		}
	}
	out[o] = '\0';
	return out;
}

/* Decode the UTF-8 sequence at s (NUL-terminated): its code point into
 * *cp and its length, or 0 when invalid (overlong, surrogate, above
 * U+10FFFF, truncated). */
static size_t
utf8_decode(const unsigned char *s, uint32_t *cp)
{
	size_t len, i;
	uint32_t v;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		v = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		v = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		v = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)    /* also stops at the NUL */
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) ||
	    (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff)
		return 0;
	*cp = v;
	return len;
}

char *
sbx_orcpt_encode(const char *addr)
{
	const unsigned char *s = (const unsigned char *)addr;
	struct sbx_buf b = { 0 };
	int ascii = 1;
	size_t i, n;
	uint32_t cp;
	char *x;

	if (*s == '\0')
		return NULL;
	for (i = 0; s[i] != '\0'; i += n) {
		if ((n = utf8_decode(s + i, &cp)) == 0 || cp < 0x20 || cp == 0x7f)
			return NULL;
		if (cp >= 0x80)
			ascii = 0;
	}
	if (ascii) {
		x = sbx_xtext_encode(addr);
		sbx_buf_appendf(&b, "rfc822;%s", x);
		free(x);
		sbx_buf_append(&b, "", 1);
		return b.data;
	}
	sbx_buf_append(&b, "utf-8;", 6);
	for (i = 0; s[i] != '\0'; i += n) {
		n = utf8_decode(s + i, &cp);
		/* QCHAR: %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e */
		if (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' && cp != '\\') {
			char c = (char)cp;

			sbx_buf_append(&b, &c, 1);
		} else {
			/* EmbeddedUnicodeChar: "\x{" HEXPOINT "}", the shortest
			 * upper-case form (2 digits below U+0100). */
			sbx_buf_appendf(&b, "\\x{%02X}", (unsigned)cp);
		}
	}
	sbx_buf_append(&b, "", 1);
	return b.data;
}

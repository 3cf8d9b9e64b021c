/*
 * xtext.h - encoders for the DSN parameters sealbox-milter hands Postfix
 * with each recipient it adds (ARCHITECTURE.md "Routing (milter) and
 * delivery (lmtpd)"). The decoders live with the LMTP engine
 * (sbx_lmtp_xtext_decode, sbx_lmtp_orcpt_decode in lmtp.h); every string
 * these functions produce decodes back to its input there.
 */
#ifndef SBX_XTEXT_H
#define SBX_XTEXT_H

/*
 * RFC 3461 section 4: xtext of s. Bytes '!'..'~' stand for themselves
 * except '+' and '='; every other byte becomes "+" and two upper-case hex
 * digits ("A+B=C d" -> "A+2BB+3DC+20d"). Returns a new string; never NULL.
 */
char *sbx_xtext_encode(const char *s);

/*
 * The value of an ORCPT parameter for the address addr (given without
 * angle brackets, exactly as the client wrote it):
 *   "rfc822;" xtext(addr)               when addr is ASCII (RFC 3461), or
 *   "utf-8;" utf-8-addr-xtext(addr)     when addr holds UTF-8 (RFC 6533
 *       section 3: printable ASCII except '\', '+', '=' as itself, those
 *       three and every non-ASCII character as "\x{HEX}", upper case,
 *       no leading zeros: "j\xc3\xb6rg@x" -> "j\x{F6}rg@x").
 * The utf-8 form is pure ASCII and contains no '+', so Postfix's xtext
 * decoding of every ORCPT (cleanup) and re-encoding (smtp/lmtp client)
 * leave it unchanged.
 * Spaces (a quoted local part) are encoded like any other byte. Returns a
 * new string, or NULL when addr is empty, holds a control character (below
 * 0x20, or 0x7f) or is not valid UTF-8: no ORCPT is better than one the
 * LMTP server refuses.
 */
char *sbx_orcpt_encode(const char *addr);
#endif

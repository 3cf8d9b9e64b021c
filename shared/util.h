/*
 * util.h - small helpers every module uses: allocation that never returns
 * NULL (out of memory aborts, as Dovecot and Postfix do), hex, random ids,
 * whole-buffer I/O and directory fsync.
 */
#ifndef SBX_UTIL_H
#define SBX_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SBX_ID_BYTES 16                      /* random ids: mailboxes, deliveries */
#define SBX_ID_HEX   (SBX_ID_BYTES * 2 + 1)  /* hex form with NUL */

void *sbx_xmalloc(size_t n);
void *sbx_xcalloc(size_t n, size_t size);
void *sbx_xrealloc(void *p, size_t n);
char *sbx_xstrdup(const char *s);
char *sbx_xstrndup(const char *s, size_t n);
/* printf into a new string; never NULL. */
char *sbx_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void sbx_hex(char *out, const unsigned char *in, size_t len);
/* Value of one hex digit (either case), or -1. */
int sbx_hexval(char c);
/* Parse exactly 2*len hex digits; 0 on success, -1 otherwise. */
int sbx_unhex(unsigned char *out, size_t len, const char *hex);
/* A new random 128-bit id as 32 lower-case hex digits. */
void sbx_random_id(char out[SBX_ID_HEX]);
/* 1 if s is exactly 32 lower-case hex digits. */
int sbx_is_id(const char *s);

/* write(2)/pread(2) loops; 0 on success, -1 with errno set. */
int sbx_write_all(int fd, const void *buf, size_t len);
int sbx_read_all(int fd, void *buf, size_t len); /* -1, errno=EIO on early EOF */
/* fsync a directory so a rename or unlink in it is durable. */
int sbx_fsync_dir(const char *dir);
/* mkdir -p with mode for each created component; 0 or -1 with errno. */
int sbx_mkdir_p(const char *path, mode_t mode);
/* Read a whole file (at most max bytes) into a new buffer; -1 on error,
 * errno=EFBIG when larger than max. */
int sbx_read_file(const char *path, size_t max, char **data_r, size_t *len_r);

/* Growable byte buffer. Appending may move data: re-read b->data after. */
struct sbx_buf {
	char *data;
	size_t len, cap;
};
void sbx_buf_append(struct sbx_buf *b, const void *p, size_t n);
void sbx_buf_appendf(struct sbx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbx_buf_free(struct sbx_buf *b);

/* Big-endian integers in on-disk formats (envelopes, spool entries). */
void sbx_put_be16(unsigned char *p, uint16_t v);
void sbx_put_be32(unsigned char *p, uint32_t v);
void sbx_put_be64(unsigned char *p, uint64_t v);
uint16_t sbx_get_be16(const unsigned char *p);
uint32_t sbx_get_be32(const unsigned char *p);
uint64_t sbx_get_be64(const unsigned char *p);

/* Guarded, locked memory for secrets (sodium_malloc); like sbx_xmalloc,
 * failure kills the process. sbx_secure_free wipes and frees (NULL ok);
 * sbx_wipe_free does the same for plain malloc'd buffers that held
 * secrets or plaintext. */
void *sbx_secure_xmalloc(size_t n);
void sbx_secure_free(void *p, size_t n);
void sbx_wipe_free(void *p, size_t n);

/* Monotonic clock in microseconds. */
uint64_t sbx_now_us(void);
#endif

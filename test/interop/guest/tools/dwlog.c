/* dwlog: direct synchronous writes with a log of each completed one, for the fault tests.
 *
 *   dwlog write DEV LOG SEED START END   write from byte START up, one write at a time
 *                                        (O_DIRECT|O_SYNC), sizes cycling through SIZES; after
 *                                        each write() that returned in full, append
 *                                        "W ID OFFSET LENGTH" to LOG. The first failed write
 *                                        appends "E ID OFFSET LENGTH ERRNO" and exits 3; reaching
 *                                        END appends "F ID" and exits 0.
 *   dwlog verify DEV LOG SEED            read every W range of LOG back (O_DIRECT) and compare;
 *                                        prints "verified N writes, B bytes", exit 1 on a mismatch.
 *
 * Data of write ID: 32-bit little-endian words of xorshift32 seeded from (SEED, ID); the host
 * (test/interop/faults-log.ts) computes the same bytes to check the image. LOG is on the 9p
 * share (cache=none: each line is on the host once write() returns), so every W line is a write
 * the guest saw complete. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const unsigned SIZES[] = {4096, 65536, 512, 126976, 266240, 16384, 1536, 32768};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])
#define MAXLEN (266240)

static uint32_t seed_of(uint32_t seed, uint32_t id) {
  uint32_t s = seed * 0x9e3779b1u ^ (id + 1) * 0x85ebca6bu;
  s ^= s >> 16;
  s *= 0x7feb352du;
  s ^= s >> 15;
  return s ? s : 1;
}

static void fill(unsigned char *buf, unsigned len, uint32_t seed, uint32_t id) {
  uint32_t s = seed_of(seed, id);
  for (unsigned i = 0; i < len; i += 4) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    buf[i] = s & 0xff;
    buf[i + 1] = (s >> 8) & 0xff;
    buf[i + 2] = (s >> 16) & 0xff;
    buf[i + 3] = s >> 24;
  }
}

static void die(const char *what) {
  fprintf(stderr, "dwlog: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void logline(int fd, const char *text) {
  size_t n = strlen(text);
  if (write(fd, text, n) != (ssize_t)n) die("log write");
}

static int do_write(const char *dev, const char *logpath, uint32_t seed, long long start, long long end) {
  int fd = open(dev, O_RDWR | O_DIRECT | O_SYNC);
  if (fd < 0) die(dev);
  int lfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (lfd < 0) die(logpath);
  unsigned char *buf;
  if (posix_memalign((void **)&buf, 4096, MAXLEN)) die("posix_memalign");
  char line[128];
  long long off = start;
  for (uint32_t id = 0;; id++) {
    unsigned len = SIZES[id % NSIZES];
    if (off + len > end) {
      snprintf(line, sizeof line, "F %u\n", id);
      logline(lfd, line);
      return 0;
    }
    fill(buf, len, seed, id);
    ssize_t w = pwrite(fd, buf, len, off);
    if (w != (ssize_t)len) {
      snprintf(line, sizeof line, "E %u %lld %u %d\n", id, off, len, w < 0 ? errno : 0);
      logline(lfd, line);
      return 3;
    }
    snprintf(line, sizeof line, "W %u %lld %u\n", id, off, len);
    logline(lfd, line);
    off += len;
  }
}

static int do_verify(const char *dev, const char *logpath, uint32_t seed) {
  int fd = open(dev, O_RDONLY | O_DIRECT);
  if (fd < 0) die(dev);
  FILE *lf = fopen(logpath, "r");
  if (!lf) die(logpath);
  unsigned char *got, *want;
  if (posix_memalign((void **)&got, 4096, MAXLEN) || posix_memalign((void **)&want, 4096, MAXLEN)) die("memalign");
  char line[128];
  unsigned count = 0;
  long long bytes = 0;
  while (fgets(line, sizeof line, lf)) {
    unsigned id, len;
    long long off;
    if (sscanf(line, "W %u %lld %u", &id, &off, &len) != 3) continue;
    if (len > MAXLEN) {
      fprintf(stderr, "dwlog: bad length in %s", line);
      return 1;
    }
    ssize_t r = pread(fd, got, len, off);
    if (r != (ssize_t)len) die("read back");
    fill(want, len, seed, id);
    if (memcmp(got, want, len) != 0) {
      unsigned i = 0;
      while (got[i] == want[i]) i++;
      printf("MISMATCH write %u (%u bytes at %lld): first difference at byte %lld\n", id, len, off, off + i);
      return 1;
    }
    count++;
    bytes += len;
  }
  printf("verified %u writes, %lld bytes\n", count, bytes);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 7 && strcmp(argv[1], "write") == 0)
    return do_write(argv[2], argv[3], (uint32_t)strtoul(argv[4], 0, 0), atoll(argv[5]), atoll(argv[6]));
  if (argc == 5 && strcmp(argv[1], "verify") == 0)
    return do_verify(argv[2], argv[3], (uint32_t)strtoul(argv[4], 0, 0));
  fprintf(stderr, "usage: dwlog write DEV LOG SEED START END | dwlog verify DEV LOG SEED\n");
  return 2;
}

/* serialio: raw-mode serial I/O for the interop guest (busybox has no reliable way to read
 * exactly N bytes from a tty, or to show where a blocked writer stopped).
 *   serialio raw DEV BAUD                 set raw 8N1, CLOCAL, BAUD (SET_LINE_CODING)
 *   serialio send DEV FILE [PROGRESS]     write FILE to DEV; PROGRESS holds the bytes written so
 *                                         far, rewritten when a write stays blocked for 200 ms
 *   serialio recv DEV N OUT [READY]       read exactly N bytes into OUT; create READY once open
 *   serialio modem DEV 1|0                wait (tty open) until DCD and DSR are both on / both off,
 *                                         as the device's SERIAL_STATE notifications report them
 * Gives up after 60 s without progress. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "serialio: %s: %s\n", what, strerror(errno));
  exit(1);
}

static speed_t speed_of(long baud) {
  switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 921600: return B921600;
    default: fprintf(stderr, "serialio: unsupported baud %ld\n", baud); exit(2);
  }
}

/* Raw, 8N1, no modem control (a dropped DCD must not hang the line up), speed kept unless given. */
static void make_raw(int fd, long baud) {
  struct termios t;
  if (tcgetattr(fd, &t) < 0) die("tcgetattr");
  cfmakeraw(&t);
  t.c_cflag |= CLOCAL | CREAD;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  if (baud > 0) {
    cfsetispeed(&t, speed_of(baud));
    cfsetospeed(&t, speed_of(baud));
  }
  if (tcsetattr(fd, TCSANOW, &t) < 0) die("tcsetattr");
}

static int open_tty(const char *dev, int flags) {
  int fd = open(dev, flags | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) die(dev);
  return fd;
}

/* Wait until fd is ready; 0 when timeout_ms passed first (fatal when `fatal`). */
static int wait_for(int fd, short events, int timeout_ms, int fatal) {
  struct pollfd p = {.fd = fd, .events = events};
  int n = poll(&p, 1, timeout_ms);
  if (n < 0 && errno != EINTR) die("poll");
  if (n == 0 && fatal) {
    fprintf(stderr, "serialio: no progress for %d ms\n", timeout_ms);
    exit(3);
  }
  return n != 0;
}

static void progress(const char *path, long n) {
  if (!path) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die(path);
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%ld\n", n);
  if (write(fd, buf, len) != len) die(path);
  close(fd);
}

static int do_send(const char *dev, const char *file, const char *prog) {
  int in = open(file, O_RDONLY);
  if (in < 0) die(file);
  int fd = open_tty(dev, O_WRONLY);
  make_raw(fd, 0);
  static char buf[16384];
  long total = 0;
  progress(prog, 0);
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0) die("read file");
    if (n == 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(fd, buf + off, n - off);
      if (w < 0 && errno == EAGAIN) {
        /* Report where we stand only when the line stays blocked (the share is slow). */
        if (!wait_for(fd, POLLOUT, 200, 0)) {
          progress(prog, total);
          wait_for(fd, POLLOUT, 60000, 1);
        }
        continue;
      }
      if (w < 0) die("write tty");
      off += w;
      total += w;
    }
  }
  if (tcdrain(fd) < 0) die("tcdrain");
  progress(prog, total);
  printf("%ld\n", total);
  return 0;
}

static int do_recv(const char *dev, long want, const char *out, const char *ready) {
  int fd = open_tty(dev, O_RDONLY);
  make_raw(fd, 0);
  int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (o < 0) die(out);
  if (ready) progress(ready, 0);
  static char buf[16384];
  long got = 0;
  while (got < want) {
    long room = want - got < (long)sizeof buf ? want - got : (long)sizeof buf;
    ssize_t n = read(fd, buf, room);
    if (n < 0 && errno == EAGAIN) {
      wait_for(fd, POLLIN, 60000, 1);
      continue;
    }
    if (n <= 0) die("read tty");
    if (write(o, buf, n) != n) die("write out");
    got += n;
  }
  close(o);
  printf("%ld\n", got);
  return 0;
}

static int do_modem(const char *dev, int want) {
  int fd = open_tty(dev, O_RDONLY);
  make_raw(fd, 0);
  int bits = 0;
  for (int i = 0; i < 400; i++) {
    if (ioctl(fd, TIOCMGET, &bits) < 0) die("TIOCMGET");
    int dcd = !!(bits & TIOCM_CD), dsr = !!(bits & TIOCM_DSR);
    if (dcd == want && dsr == want) {
      printf("dcd=%d dsr=%d\n", dcd, dsr);
      return 0;
    }
    usleep(50000);
  }
  fprintf(stderr, "serialio: modem bits 0x%x after 20 s, want DCD and DSR %s\n", bits, want ? "on" : "off");
  return 4;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "raw")) {
    int fd = open_tty(argv[2], O_RDWR);
    make_raw(fd, atol(argv[3]));
    return 0;
  }
  if (argc >= 4 && !strcmp(argv[1], "send")) return do_send(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
  if (argc >= 5 && !strcmp(argv[1], "recv")) return do_recv(argv[2], atol(argv[3]), argv[4], argc > 5 ? argv[5] : NULL);
  if (argc >= 4 && !strcmp(argv[1], "modem")) return do_modem(argv[2], atoi(argv[3]));
  fprintf(stderr, "usage: serialio raw DEV BAUD | send DEV FILE [PROGRESS] | recv DEV N OUT [READY] | modem DEV 1|0\n");
  return 2;
}

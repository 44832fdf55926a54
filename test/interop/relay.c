/*
 * usbwire-relay: tiny TCP relay for QEMU user networking.
 *
 *   -netdev user,...,guestfwd=tcp:10.0.2.100:GPORT-cmd:usbwire-relay HOSTPORT [HOST]
 *
 * QEMU (slirp) starts this program once per guest connection with that connection on
 * stdin, stdout AND stderr. It connects to HOST:HOSTPORT (default 127.0.0.1) and pumps
 * bytes both ways until both directions have seen EOF.
 *
 * Rules (see shared/rig/README.md):
 *  - never write to stderr: fd 2 is the guest connection. fd 2 is replaced by /dev/null
 *    at start so that nothing (not even libc) can leak text into the stream;
 *  - TCP_NODELAY on both sockets (QEMU's end of the stdin socket has Nagle on);
 *  - TCP_QUICKACK re-armed after every read (Linux clears it on its own).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)

static void tune(int fd) {
  int one = 1;
  /* errors ignored: stdin/stdout may be a pipe when run by hand */
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static void quickack(int fd) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        (void)poll(&pfd, 1, -1);
        continue;
      }
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0 && devnull != 2) {
    (void)dup2(devnull, 2);
    close(devnull);
  }
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) return 2;
  int port = atoi(argv[1]);
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  if (port <= 0 || port > 65535) return 2;

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return 2;

  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return 3;
  tune(s);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) return 4;
  tune(s);
  tune(0);
  tune(1);

  static char buf[BUFSZ];
  int in_open = 1;  /* guest -> server direction still open */
  int out_open = 1; /* server -> guest direction still open */
  while (in_open || out_open) {
    struct pollfd pfd[2];
    int n = 0, ig = -1, is = -1;
    if (in_open) { pfd[n].fd = 0; pfd[n].events = POLLIN; pfd[n].revents = 0; ig = n++; }
    if (out_open) { pfd[n].fd = s; pfd[n].events = POLLIN; pfd[n].revents = 0; is = n++; }
    int r = poll(pfd, (nfds_t)n, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return 5;
    }
    if (ig >= 0 && pfd[ig].revents) {
      ssize_t got = read(0, buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
        /* retry */
      } else if (got <= 0) {
        in_open = 0;
        (void)shutdown(s, SHUT_WR);
      } else {
        quickack(0);
        if (write_all(s, buf, (size_t)got) < 0) return 6;
      }
    }
    if (is >= 0 && pfd[is].revents) {
      ssize_t got = read(s, buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
        /* retry */
      } else if (got <= 0) {
        out_open = 0;
        if (shutdown(1, SHUT_WR) < 0) close(1);
        /* server went away: nothing more can flow; stop reading the guest too once it
           closes, but don't wait forever if the server reset the connection */
        if (got < 0) return 0;
      } else {
        quickack(s);
        if (write_all(1, buf, (size_t)got) < 0) return 7;
      }
    }
  }
  return 0;
}

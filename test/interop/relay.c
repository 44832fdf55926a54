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

/* Per direction: far above what a USB/IP peer keeps in flight, so neither side waits on us. */
#define BUFSZ (8 * 1024 * 1024)

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

/*
 * One direction of the pump: bytes read from one side, waiting to be written to the other.
 * Nothing here ever blocks: QEMU writes the guest's bytes to our stdin with a blocking
 * write_all from its main loop, so a relay that stops reading stdin (because it is blocked
 * writing the other way, to a guest whose window is full) freezes the whole VM.
 */
struct pipe_buf {
  char data[BUFSZ];
  size_t off, len;
};

static int buf_has_room(const struct pipe_buf *b) { return b->len < BUFSZ; }

/* Read what fits; 1 = got bytes, 0 = EOF, -1 = error, 2 = nothing now. */
static int buf_fill(struct pipe_buf *b, int fd) {
  if (b->off > 0 && b->off + b->len == BUFSZ) {
    memmove(b->data, b->data + b->off, b->len);
    b->off = 0;
  }
  ssize_t got = read(fd, b->data + b->off + b->len, BUFSZ - b->off - b->len);
  if (got < 0) return (errno == EINTR || errno == EAGAIN) ? 2 : -1;
  if (got == 0) return 0;
  b->len += (size_t)got;
  return 1;
}

/* Write what the other side takes; -1 on error. */
static int buf_drain(struct pipe_buf *b, int fd) {
  ssize_t w = write(fd, b->data + b->off, b->len);
  if (w < 0) return (errno == EINTR || errno == EAGAIN) ? 0 : -1;
  b->off += (size_t)w;
  b->len -= (size_t)w;
  if (b->len == 0) b->off = 0;
  return 0;
}

static void nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
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

  nonblocking(0);
  nonblocking(1);
  nonblocking(s);
  static struct pipe_buf to_server, to_guest;
  int in_open = 1;  /* guest -> server: still reading the guest */
  int out_open = 1; /* server -> guest: still reading the server */
  int server_shut = 0, guest_shut = 0;
  for (;;) {
    if (!in_open && to_server.len == 0 && !server_shut) {
      (void)shutdown(s, SHUT_WR);
      server_shut = 1;
    }
    if (!out_open && to_guest.len == 0 && !guest_shut) {
      if (shutdown(1, SHUT_WR) < 0) close(1);
      guest_shut = 1;
    }
    if (server_shut && guest_shut) return 0;
    struct pollfd pfd[4];
    int n = 0, rg = -1, ws = -1, rs = -1, wg = -1;
    if (in_open && buf_has_room(&to_server)) { pfd[n] = (struct pollfd){.fd = 0, .events = POLLIN}; rg = n++; }
    if (to_server.len > 0) { pfd[n] = (struct pollfd){.fd = s, .events = POLLOUT}; ws = n++; }
    if (out_open && buf_has_room(&to_guest)) { pfd[n] = (struct pollfd){.fd = s, .events = POLLIN}; rs = n++; }
    if (to_guest.len > 0) { pfd[n] = (struct pollfd){.fd = 1, .events = POLLOUT}; wg = n++; }
    int r = poll(pfd, (nfds_t)n, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return 5;
    }
    if (rg >= 0 && pfd[rg].revents) {
      int got = buf_fill(&to_server, 0);
      if (got == 1) quickack(0);
      else if (got <= 0) in_open = 0;
    }
    if (rs >= 0 && pfd[rs].revents) {
      int got = buf_fill(&to_guest, s);
      if (got == 1) quickack(s);
      else if (got < 0) return 0; /* the server reset the connection: nothing more can flow */
      else if (got == 0) out_open = 0;
    }
    if (ws >= 0 && pfd[ws].revents && buf_drain(&to_server, s) < 0) return 6;
    if (wg >= 0 && pfd[wg].revents && buf_drain(&to_guest, 1) < 0) return 7;
  }
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: blkctl auth ... (docs/auth.md): each subcommand is one
 * AuthCommand (MSG_MON_AUTH_COMMAND) to the leader, which checks the
 * caller's mon caps, and for changes proposes the next auth database
 * through Raft and answers once it is applied.  The answer's message is
 * the output (a keyring section, a key, a listing).  A change that lost a
 * race with another one (-ESTALE) or that arrived while the database is
 * being created (-EAGAIN) is retried.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/blkctl/blkctl.h"
#include "common/msgtypes.h"
#include "common/util.h"
#include "proto/auth.pb-c.h"

struct call {
  bool done;
  int err;
  int rerr;
  char *message;
};

static void on_reply(void *arg, int err, const Blk__MonReply *rep)
{
  struct call *c = arg;
  c->done = true;
  c->err = err;
  if (rep) {
    c->rerr = rep->err;
    c->message = strdup(rep->message ? rep->message : "");
  }
}

/* Run cmd; on success *out gets the output (malloc'ed).  0 or an exit code. */
static int auth_call(struct blkctl *b, Blk__AuthCommand *cmd, char **out)
{
  int r = blkctl_connect(b);
  if (r)
    return r;
  int64_t deadline = util_now_ms() + b->timeout_ms;
  for (int attempt = 0;; attempt++) {
    struct call c = { 0 };
    int left = (int)(deadline - util_now_ms());
    if (left <= 0)
      return blkctl_fail(ETIMEDOUT, "auth %s: no answer in time", cmd->op);
    r = monc_call_async(b->monc, MSG_MON_AUTH_COMMAND, (const ProtobufCMessage *)cmd, left,
                        on_reply, &c);
    if (r < 0)
      return blkctl_fail(blkctl_exit_code(r), "auth %s: %s", cmd->op, strerror(-r));
    while (!c.done)
      event_base_loop(b->base, EVLOOP_ONCE);
    if (c.err == -EACCES)
      return blkctl_fail(EACCES, "authentication as %s failed: %s", monc_entity(b->monc),
                         monc_auth_error(b->monc));
    if (c.err < 0)
      return blkctl_fail(blkctl_exit_code(c.err), "auth %s: %s", cmd->op,
                         c.err == -ETIMEDOUT ? "no monitor quorum answered in time"
                                             : strerror(-c.err));
    if ((c.rerr == -ESTALE || c.rerr == -EAGAIN) && attempt < 20) {
      free(c.message);
      struct timeval tv = { 0, 200 * 1000 };
      event_base_loopexit(b->base, &tv);
      event_base_dispatch(b->base);
      continue;
    }
    if (c.rerr < 0) {
      int code = blkctl_fail(blkctl_exit_code(c.rerr), "%s",
                             c.message && c.message[0] ? c.message : strerror(-c.rerr));
      free(c.message);
      return code;
    }
    *out = c.message;
    return 0;
  }
}

/* [mon CAPS] [osd CAPS] pairs from argv[i..]; other words go to rest. */
static int parse_caps(int argc, char **argv, int i, Blk__AuthCommand *cmd, bool *print_key,
                      const char **outfile)
{
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "mon") && i + 1 < argc) {
      cmd->caps_mon = argv[++i];
      cmd->has_caps = true;
    } else if (!strcmp(argv[i], "osd") && i + 1 < argc) {
      cmd->caps_osd = argv[++i];
      cmd->has_caps = true;
    } else if (print_key && !strcmp(argv[i], "--print-key")) {
      *print_key = true;
    } else if (outfile && !strcmp(argv[i], "-o") && i + 1 < argc) {
      *outfile = argv[++i];
    } else {
      return blkctl_fail(EINVAL, "unexpected '%s' (expected mon CAPS, osd CAPS%s)", argv[i],
                         print_key ? ", --print-key or -o FILE" : "");
    }
  }
  return 0;
}

/* The base64 key in a keyring section (copied into key). */
static int key_of(const char *text, char *key, size_t n)
{
  const char *k = strstr(text, "key = ");
  if (!k)
    return -1;
  k += 6;
  size_t l = strcspn(k, "\r\n");
  if (l >= n)
    return -1;
  memcpy(key, k, l);
  key[l] = 0;
  return 0;
}

static int write_private(const char *path, const char *text)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return blkctl_fail(blkctl_exit_code(-errno), "cannot write %s: %s", path, strerror(errno));
  fchmod(fd, 0600);
  size_t len = strlen(text);
  ssize_t w = write(fd, text, len);
  if (w != (ssize_t)len || fsync(fd) < 0 || close(fd) < 0)
    return blkctl_fail(EIO, "cannot write %s", path);
  return 0;
}

static char *read_file(const char *path)
{
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      if (cap > (1u << 24)) {
        free(buf);
        fclose(f);
        errno = EFBIG;
        return NULL;
      }
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
    }
    size_t r = fread(buf + n, 1, 4096, f);
    n += r;
    if (r < 4096)
      break;
  }
  fclose(f);
  buf[n] = 0;
  return buf;
}

int cmd_auth(struct blkctl *b, int argc, char **argv)
{
  if (argc < 2)
    return blkctl_fail(EINVAL, "auth: get-or-create, get, get-key, ls, caps, del or import");
  const char *op = argv[1];
  Blk__AuthCommand cmd = BLK__AUTH_COMMAND__INIT;
  cmd.op = (char *)op;
  bool print_key = false;
  const char *outfile = NULL;
  char *text = NULL, *in = NULL;
  int r;
  if (!strcmp(op, "ls")) {
    if (argc != 2)
      return blkctl_fail(EINVAL, "usage: auth ls");
  } else if (!strcmp(op, "import")) {
    if (argc != 4 || strcmp(argv[2], "-i"))
      return blkctl_fail(EINVAL, "usage: auth import -i FILE");
    in = read_file(argv[3]);
    if (!in)
      return blkctl_fail(blkctl_exit_code(-errno), "cannot read %s: %s", argv[3],
                         strerror(errno));
    cmd.keyring = in;
  } else if (!strcmp(op, "get-or-create") || !strcmp(op, "caps")) {
    if (argc < 3)
      return blkctl_fail(EINVAL, "usage: auth %s ENTITY [mon CAPS] [osd CAPS]", op);
    cmd.entity = argv[2];
    bool goc = !strcmp(op, "get-or-create");
    if ((r = parse_caps(argc, argv, 3, &cmd, goc ? &print_key : NULL, goc ? &outfile : NULL)))
      return r;
    if (!goc)
      cmd.has_caps = true;   /* caps given or not: set exactly these */
  } else if (!strcmp(op, "get") || !strcmp(op, "get-key") || !strcmp(op, "del")) {
    if (argc != 3)
      return blkctl_fail(EINVAL, "usage: auth %s ENTITY", op);
    cmd.entity = argv[2];
  } else {
    return blkctl_fail(EINVAL, "unknown auth command '%s'", op);
  }
  r = auth_call(b, &cmd, &text);
  free(in);
  if (r)
    return r;
  char key[128];
  const char *out = text;
  if (print_key) {
    if (key_of(text, key, sizeof key - 1) < 0) {
      free(text);
      return blkctl_fail(EPROTO, "no key in the monitors' answer");
    }
    strcat(key, "\n");
    out = key;
  }
  if (outfile)
    r = write_private(outfile, out);
  else
    fputs(out, stdout);
  free(text);
  return r;
}

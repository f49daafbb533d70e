/* SPDX-License-Identifier: Apache-2.0 */
/* Design notes: see monc.h. */
#include "client/monc.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/msgr.h"
#include "common/msgtypes.h"
#include "common/util.h"

struct monc {
  struct event_base *base;
  msgr *msgr;
  struct cm_mon mons[CM_MAX_MONS];
  size_t n_mons;
  msgr_conn *conns[CM_MAX_MONS];
  char why[CM_MAX_MONS][160];     /* last failure per monitor */
  size_t cur;
  uint64_t req_seq;
  char nonce[20];
};

monc *monc_new(struct event_base *base, const config *cfg, char *err, size_t errlen)
{
  monc *mc = calloc(1, sizeof *mc);
  if (!mc) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  mc->base = base;
  if (util_monmap_from_config(cfg, mc->mons, &mc->n_mons, err, errlen) < 0) {
    free(mc);
    return NULL;
  }
  struct frame_limits lim = {
    (uint32_t)config_get_int(cfg, "msgr_max_payload"),
    (uint32_t)config_get_int(cfg, "msgr_max_data"),
  };
  mc->msgr = msgr_new(base, &lim, NULL, NULL);
  if (!mc->msgr) {
    snprintf(err, errlen, "out of memory");
    free(mc);
    return NULL;
  }
  msgr_set_timeouts(mc->msgr, (int)config_get_int(cfg, "msgr_connect_timeout"), 200);
  for (size_t i = 0; i < mc->n_mons; i++) {
    mc->conns[i] = msgr_connect(mc->msgr, mc->mons[i].addr);
    if (!mc->conns[i]) {
      snprintf(err, errlen, "invalid monitor address '%s'", mc->mons[i].addr);
      monc_free(mc);
      return NULL;
    }
  }
  unsigned char r[8];
  RAND_bytes(r, sizeof r);
  snprintf(mc->nonce, sizeof mc->nonce, "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
           r[3], r[4], r[5], r[6], r[7]);
  mc->cur = (size_t)r[0] % mc->n_mons;
  return mc;
}

void monc_free(monc *mc)
{
  if (!mc)
    return;
  for (size_t i = 0; i < mc->n_mons; i++)
    if (mc->conns[i])
      msgr_conn_put(mc->conns[i]);
  msgr_free(mc->msgr);
  free(mc);
}

static size_t find_mon(const monc *mc, const char *addr)
{
  for (size_t i = 0; i < mc->n_mons; i++)
    if (!strcmp(mc->mons[i].addr, addr))
      return i;
  return SIZE_MAX;
}

static void sleep_loop(struct event_base *base, int ms)
{
  struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
  event_base_loopexit(base, &tv);
  event_base_dispatch(base);
}

int monc_command(monc *mc, Blk__MonCommand *cmd, int timeout_ms, Blk__MonReply **reply,
                 char *err, size_t errlen)
{
  char req_id[64];
  if (cmd->txn && (!cmd->txn->req_id || !cmd->txn->req_id[0])) {
    snprintf(req_id, sizeof req_id, "%s-%llu", mc->nonce, (unsigned long long)++mc->req_seq);
    cmd->txn->req_id = req_id;
  }
  for (size_t i = 0; i < mc->n_mons; i++)
    mc->why[i][0] = 0;
  int64_t deadline = util_now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - util_now_ms();
    if (left <= 0)
      break;
    size_t i = mc->cur;
    int attempt = left < 2000 ? (int)left : 2000;
    struct msgr_frame *f = NULL;
    int r = msgr_call_sync(mc->conns[i], MSG_MON_COMMAND, (const ProtobufCMessage *)cmd,
                           NULL, 0, attempt, &f);
    if (r < 0) {
      int why = msgr_conn_last_error(mc->conns[i]);
      snprintf(mc->why[i], sizeof mc->why[i], "%s",
               r == -ETIMEDOUT ? "no answer (timed out)"
                               : strerror(why ? -why : -r));
      mc->cur = (i + 1) % mc->n_mons;
      if (mc->cur == 0 || mc->n_mons == 1)
        sleep_loop(mc->base, 100);
      continue;
    }
    Blk__MonReply *rep = blk__mon_reply__unpack(NULL, f->payload_len, f->payload);
    msgr_frame_free(f);
    if (!rep) {
      snprintf(mc->why[i], sizeof mc->why[i], "sent an undecodable reply");
      mc->cur = (i + 1) % mc->n_mons;
      continue;
    }
    if (rep->err == -ENOTCONN || rep->err == -EAGAIN) {
      size_t l = rep->leader_addr[0] ? find_mon(mc, rep->leader_addr) : SIZE_MAX;
      snprintf(mc->why[i], sizeof mc->why[i], "%s",
               rep->err == -EAGAIN ? "leadership changing" : "is not the leader and knows none");
      if (l != SIZE_MAX && l != i) {
        mc->cur = l;
      } else {
        /* no leader known yet (election running): wait a little */
        if (l == SIZE_MAX)
          mc->cur = (i + 1) % mc->n_mons;
        sleep_loop(mc->base, 50);
      }
      blk__mon_reply__free_unpacked(rep, NULL);
      continue;
    }
    *reply = rep;
    return 0;
  }
  size_t n = (size_t)snprintf(err, errlen, "no monitor quorum answered within %d ms:", timeout_ms);
  for (size_t i = 0; i < mc->n_mons && n < errlen; i++)
    n += (size_t)snprintf(err + n, errlen - n, " mon.%s (%s): %s;", mc->mons[i].name,
                          mc->mons[i].addr, mc->why[i][0] ? mc->why[i] : "not tried");
  return -ETIMEDOUT;
}

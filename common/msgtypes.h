/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the one registry of frame types (the `type` field of the
 * frame header, frame.h) and the protobuf message each carries.  Numbers
 * never change once released; new ones are appended in their range.
 */
#ifndef BLK_COMMON_MSGTYPES_H
#define BLK_COMMON_MSGTYPES_H

enum msg_type {
  /* 1..99: monitors */
  MSG_RAFT = 1,           /* RaftMsg, one-way between monitors */
  MSG_MON_COMMAND = 2,    /* MonCommand -> MonReply */
  MSG_MON_SUBSCRIBE = 3,  /* Subscribe -> MonReply; then MSG_MAP_UPDATE pushes */
  MSG_MAP_UPDATE = 4,     /* MapUpdate, one-way to subscribers */
  MSG_MON_AUTH_COMMAND = 5, /* AuthCommand -> MonReply (auth.proto; docs/auth.md) */
  MSG_MON_MAP_HISTORY = 6,  /* MapHistoryReq -> MonReply.history (docs/osd.md) */
  /* 200..299: auth (issue 7; proto/auth.proto, docs/auth.md) */
  MSG_AUTH_HELLO = 200,       /* AuthHello -> AuthChallenge (client -> mon) */
  MSG_AUTH_PROOF = 201,       /* AuthProof -> AuthReply (client -> mon) */
  MSG_AUTH_AUTHORIZER = 202,  /* Authorizer -> AuthorizerReply (client -> OSD) */
  MSG_AUTH_GET_SECRETS = 203, /* (empty) -> SealedSecrets (OSD -> mon, after auth) */
  /* 100..199: OSD (issue 4; proto/osd.proto, docs/osd.md) */
  MSG_OSD_BEACON = 100,   /* OsdBeacon -> MonReply (to the leader) */
  MSG_OSD_FAILURE = 101,  /* OsdFailure -> MonReply (to the leader) */
  MSG_OSD_PING = 102,     /* OsdPing -> OsdPing, OSD to OSD */
  MSG_OSD_OP = 103,       /* OsdOp -> OsdOpReply, client to primary */
  MSG_OSD_REPOP = 104,    /* RepOp -> RepOpReply, primary to replica */
  MSG_PG_QUERY = 105,     /* PgQuery -> PgInfo, peering */
  MSG_PG_PULL = 106,      /* PgObject -> PgObject + data, recovery read */
  MSG_PG_PUSH = 107,      /* PgObject + data -> PgObject, recovery write */
  MSG_PG_ACTIVATE = 108,  /* PgActivate -> RepOpReply, end of peering */
  MSG_PG_STATS = 109,     /* PgStats -> MonReply (to the leader) */
  MSG_PG_SCRUB_MAP = 110, /* ScrubMapReq -> ScrubMap, primary to member (scrub) */
  MSG_PG_SCRUB_CMD = 111, /* PgScrubCmd -> PgScrubResult, client to primary */
};

#define MSG_AUTH_FIRST 200
#define MSG_AUTH_LAST 299

#endif

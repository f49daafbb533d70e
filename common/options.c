/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Design notes: the one table of every configuration option, with its
 * default and documentation.  `blk-mon --help-config` (and every daemon)
 * prints it; docs/configuration.md is the long form.  Keep sections in
 * the order global, mon, osd, client.
 */
#include "config.h"

const struct config_option config_options[] = {
  /* global */
  { "fsid", CFG_STR, "", "cluster id (uuid), written by blkctl cluster init" },
  { "mon_initial_members", CFG_STR, "", "monitor names, comma separated (a,b,c)" },
  { "mon_host", CFG_STR, "", "monitor addresses host:port, same order as mon_initial_members" },
  { "run_dir", CFG_STR, "./run", "directory for pid files, sockets and logs" },
  { "log_level", CFG_STR, "info", "error|warn|info|debug|trace" },
  { "auth_mode", CFG_STR, "cephx", "none|cephx|secure (wire authentication; see docs/auth.md)" },
  { "keyring", CFG_STR, "", "keyring file with this entity's key" },
  { "msgr_max_payload", CFG_SIZE, "4M", "largest protobuf payload a frame may carry" },
  { "msgr_max_data", CFG_SIZE, "64M", "largest raw data segment a frame may carry" },
  { "msgr_connect_timeout", CFG_MS, "3s", "TCP connect timeout" },
  { "msgr_reconnect_max_backoff", CFG_MS, "2s", "upper bound of the reconnect backoff" },
  { "msgr_tcp_user_timeout", CFG_MS, "10s", "fail a TCP connection whose sent data stays unacknowledged this long" },
  /* mon */
  { "mon_data", CFG_STR, "", "monitor store directory (RocksDB); default <run_dir>/mon.<id>" },
  { "mon_addr", CFG_STR, "", "address this monitor listens on; default from mon_host" },
  { "mon_election_timeout", CFG_MS, "1000ms", "Raft election timeout base (randomized up to 2x)" },
  { "mon_heartbeat_interval", CFG_MS, "100ms", "Raft leader heartbeat interval" },
  { "mon_tick_interval", CFG_MS, "20ms", "Raft clock granularity" },
  { "mon_snapshot_every", CFG_INT, "1000", "compact the Raft log into a state snapshot every N entries" },
  { "mon_max_pg_num", CFG_INT, "65536", "largest pg_num a pool may have" },
  { "mon_max_pool_size", CFG_INT, "10", "largest replica count a pool may have" },
  { "mon_map_history", CFG_INT, "500", "incremental maps kept at least (more are kept back to every PG's last activation, up to mon_map_history_max)" },
  /* osd store */
  { "osd_device", CFG_STR, "", "block device or file holding this OSD's store" },
  { "osd_data", CFG_STR, "", "OSD data directory (RocksDB metadata); default <osd_device>.db" },
  { "osd_store_journal_size", CFG_SIZE, "64M", "journal size written by mkfs (at most 1/4 of the device)" },
  { "osd_store_deferred_max", CFG_SIZE, "4K", "writes up to this size are journaled with their data (deferred); larger ones go to new blocks directly" },
  { "osd_store_nearfull_ratio", CFG_INT, "85", "percent of the data area in use at which store_statfs reports nearfull" },
  { "osd_full_ratio", CFG_INT, "95", "percent of an OSD's data area in use at which primaries refuse new data for its PGs (ENOSPC); removes and truncates still run" },
  { "osd_store_ckpt_interval", CFG_MS, "500ms", "checkpoint (write back journaled data, trim the journal) at least this often when there is work" },
  { "osd_store_ckpt_journal_pct", CFG_INT, "25", "checkpoint as soon as the journal is this percent full" },
  { "osd_store_apply_delay", CFG_MS, "25ms", "journaled metadata is written to RocksDB in one batch at most this long after the first record of the batch became durable" },
  { "osd_store_apply_batch", CFG_INT, "256", "or as soon as this many records wait (a batch runs on the event loop: ~20 us per record measured at QD1)" },
  { "osd_store_journal_dsync", CFG_BOOL, "true", "journal and direct writes are RWF_DSYNC writes (one I/O each); false: write + fdatasync" },
  { "osd_store_direct_min_queue", CFG_INT, "0", "small (deferred-size) writes go direct, to new blocks, as plain writes made durable by their journal batch's fdatasync, once this many transactions wait or rode in the last journal write; 0: never (docs/store.md)" },
  /* auth (docs/auth.md) */
  { "auth_ticket_ttl", CFG_MS, "1h", "lifetime of a session key and of the OSD ticket a monitor issues; at most auth_service_secret_ttl" },
  { "auth_service_secret_ttl", CFG_MS, "1h", "the monitors rotate the OSD service secret this often (current + previous are kept)" },
  { "auth_clock_skew", CFG_MS, "30s", "how far an authorizer's timestamp may be from the OSD's clock; also how long nonces are remembered" },
  { "auth_challenge_ttl", CFG_MS, "30s", "how long a monitor's auth challenge stays valid" },
  { "name", CFG_STR, "", "entity this client authenticates as (default client.admin; daemons use their own, e.g. osd.3)" },
  { "key", CFG_STR, "", "the entity's key in base64 (instead of a keyring; visible in ps, prefer key_file)" },
  { "key_file", CFG_STR, "", "file holding the entity's bare base64 key (instead of a keyring)" },
  { "auth_ticket_renew", CFG_BOOL, "true", "renew the session and OSD ticket before they expire (false only for tests)" },
  { "auth_replay_cache_size", CFG_INT, "65536", "authorizer nonces an OSD remembers (bounded; when full, older timestamps are refused)" },
  /* ---- OSD daemon and replication (issue 4; docs/osd.md) ---- */
  { "mon_osd_beacon_grace", CFG_MS, "10s", "the leader marks an up OSD down after this long without a beacon; also how long failure reports count" },
  { "mon_osd_down_out_interval", CFG_MS, "10m", "the leader marks a down OSD out after this long (0 = never)" },
  { "mon_osd_min_down_reporters", CFG_INT, "2", "failure reports from this many distinct failure domains mark an OSD down" },
  { "osd_host", CFG_STR, "", "host name this OSD reports (its failure domain); default gethostname()" },
  { "host", CFG_STR, "", "alias of osd_host" },
  { "osd_addr", CFG_STR, "127.0.0.1:0", "address the OSD listens on (port 0 = any free port); published in the map" },
  { "osd_beacon_interval", CFG_MS, "2s", "how often an OSD sends a beacon to the leader monitor" },
  { "osd_heartbeat_interval", CFG_MS, "1s", "how often an OSD pings its PG peers" },
  { "osd_heartbeat_grace", CFG_MS, "6s", "a peer silent for this long is reported failed to the monitors" },
  { "osd_op_timeout_undersized", CFG_MS, "30s", "a write to a PG below min_size waits this long, then fails with EAGAIN" },
  { "osd_op_timeout", CFG_MS, "10s", "replica ops and recovery reads/pushes time out after this long" },
  { "osd_pg_log_max", CFG_INT, "3000", "PG log entries kept per PG (recovery by log within this window, backfill beyond)" },
  { "osd_lock_lease_ms", CFG_MS, "30s", "lease of an object lock (OP_LOCK) when the request gives none; renewing extends it" },
  { "osd_async_recovery", CFG_BOOL, "false", "when at least min_size members (the primary among them) are up to date, go active for them (writes acknowledged by those) and recover the others behind client I/O; false: I/O waits until every up member is recovered" },
  { "osd_stats_interval", CFG_MS, "2s", "how often a primary reports its PG states to the leader monitor" },
  /* ---- end of OSD block ---- */
  /* client */
  { "client_op_timeout", CFG_MS, "60s", "how long the object client retries an op before failing it" },
  { "client_timeout", CFG_MS, "10s", "how long blkctl waits for a quorum answer" },
  /* images (libblk, issue 5; docs/images.md) */
  { "image_lock_lease", CFG_MS, "10s", "lease of an image's exclusive lock; the holder renews it every quarter lease, a holder silent this long is fenced and its lock broken" },
  { "image_lock_timeout", CFG_MS, "30s", "how long a read-write open waits for another client to release the image's lock before failing with EBUSY" },
  { "image_refresh_interval", CFG_MS, "1s", "how often an open image that does not hold the exclusive lock re-reads its header to see a resize made through another handle (0 = only at open)" },
  /* scrub (osd/scrub.c; docs/osd.md "Scrub") */
  { "osd_scrub_interval", CFG_MS, "24h", "a primary scrubs each active+clean PG this often (0 = never periodically)" },
  { "osd_deep_scrub_interval", CFG_MS, "168h", "a primary deep-scrubs (reads and checksums all data of) each PG this often (0 = never periodically)" },
  { "osd_scrub_chunk", CFG_INT, "64", "objects per scrub chunk (writes to a chunk being scrubbed make it retry)" },
  /* lease and recovery rate (docs/osd.md "Lease", "Recovery rate") */
  { "osd_lease", CFG_MS, "6s", "an OSD serves client ops only within this long of sending a beacon the leader monitor acknowledged; needs osd_beacon_interval < osd_lease < mon_osd_beacon_grace (0 = no lease, unsafe)" },
  { "osd_lease_margin", CFG_MS, "3s", "a new primary replacing a down one waits until the map's down stamp + osd_lease + this: covers wall-clock skew between monitors and OSDs and a deposed leader monitor's CheckQuorum window (about 2 x mon_election_timeout)" },
  { "osd_recovery_max_bytes_per_sec", CFG_SIZE, "0", "recovery and backfill copy at most this many bytes per second per OSD (token bucket on the primary; 0 = unlimited)" },
  { "osd_recovery_max_active", CFG_INT, "8", "objects a primary recovers or backfills at a time per PG (1..64)" },
  { "osd_store_db_write_buffer", CFG_SIZE, "16M", "size of one RocksDB memtable of the OSD's metadata (RocksDB keeps up to two): bounds the OSD's memory (docs/osd.md \"Memory\")" },
  { "osd_pg_log_entries_per_osd", CFG_INT, "150000", "in-memory PG log entries an OSD keeps over all its PGs: each PG keeps budget / PGs (at least 100, at most osd_pg_log_max; 0 = osd_pg_log_max each)" },
  { "osd_debug_stop_after_install", CFG_BOOL, "false", "TEST ONLY (fault injection, never in production): a primary exits (status 1) once its recovery installed objects on the members, before activation, leaving them with unlogged objects (tests/integration/test-osd-unlogged.sh)" },
  { "mon_map_history_max", CFG_INT, "10000", "map history entries the monitors keep at most: beyond it they trim even epochs a PG still needs to derive its past intervals (HEALTH_WARN; docs/monitor.md \"Map history floor\")" },
  { "osd_map_cache_min", CFG_INT, "64", "newest maps an OSD always keeps for deriving past intervals; older ones only back to the oldest last-epoch-started of its PGs (others are fetched from the monitors again when needed)" },
  { NULL, CFG_STR, NULL, NULL },
};

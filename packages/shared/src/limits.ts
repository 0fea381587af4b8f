/**
 * Every limit and wait in plumb, named once. Both ends import these.
 *
 * Each limit a user or an attacker can reach has a test (a unit test, or an e2e test against the
 * lab) that goes one past it the way they would, by the constant's name (grep it under test/),
 * and gets the clean error; what a hostile server answers the controller (AGENT_HTTP_BODY_MAX_BYTES,
 * ACME_DIRECTORY_MAX_BYTES) is crossed in test/unit/limits.test.ts, and the ranges of ranges.ts
 * (GROUP_PARALLEL among them) in cli.test.ts, and AGENT_PACKAGE_MAX_BYTES over a real agent's
 * socket in adopt.test.ts. Not yet: the agent package's extracted bytes and entries (enforced by
 * extractBundle, whose bundle limits bundle.test.ts crosses). The waits, intervals and ports are
 * plumb's own pacing and layout, which no input moves past: e2e tests run them.
 */

/** The agent's TLS WebSocket port on each droplet (opened in ufw next to 22 and 80). */
export const AGENT_PORT = 8731;

/** DigitalOcean refuses user_data over 64 KiB. */
export const USER_DATA_MAX_BYTES = 64 * 1024;

/** One-time enrolment secret: 128 bits. */
export const ENROLMENT_SECRET_BYTES = 16;
/**
 * Tries of an enrolment whose answer did not arrive (reset, timed out), the first included: the
 * agent answers again, the same, until the first authenticated socket burns its secret.
 */
export const ENROLMENT_ATTEMPTS = 3;
export const ENROLMENT_RETRY_DELAY_MS = 1_000;

/** A controller token lives this long; the agent refuses tokens without `exp` or living longer. */
export const TOKEN_TTL_SECONDS = 60;
export const TOKEN_MAX_LIFETIME_SECONDS = 120;
/** Clock difference tolerated between controller and droplet. */
export const TOKEN_CLOCK_TOLERANCE_SECONDS = 30;
/** Token ids remembered against replay (each until its token expires). */
export const REPLAY_CACHE_MAX_ENTRIES = 100_000;

/** Largest single WebSocket message either end accepts. */
export const WS_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;
/** Open sockets one address may hold on the agent. */
export const AGENT_MAX_CONNECTIONS_PER_PEER = 16;
/**
 * TCP connections one address may hold on the agent's port, counted as they arrive (before TLS or
 * a token): room for its sockets and a few plain requests, and no more.
 */
export const AGENT_MAX_TCP_PER_PEER = 2 * AGENT_MAX_CONNECTIONS_PER_PEER;
/** TCP connections the agent's port holds in all; past it the kernel's new ones are dropped. */
export const AGENT_MAX_TCP_TOTAL = 512;
/** Requests one socket may have in flight. */
export const AGENT_MAX_PENDING_REQUESTS = 32;
/** How long the agent lets in-flight operations finish on SIGTERM. */
export const AGENT_SHUTDOWN_GRACE_MS = 10_000;
/** Largest plain HTTP answer the controller reads from an agent or its bootstrap (status, enrolment). */
export const AGENT_HTTP_BODY_MAX_BYTES = 256 * 1024;
/** Bound on a TLS handshake + HTTP upgrade. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** How often the agent looks at cloud-init while it runs. */
export const CLOUD_INIT_POLL_MS = 1_000;

/** Controller waits (provision). */
export const DROPLET_ACTIVE_TIMEOUT_MS = 5 * 60_000;
export const AGENT_ANSWER_TIMEOUT_MS = 15 * 60_000;
/**
 * From `active` until the droplet's bootstrap (or agent) first answers: past it, provision says the
 * droplet never got going instead of waiting (issue 18: within 2 minutes of the droplet booting).
 */
export const DROPLET_BOOT_TIMEOUT_MS = 2 * 60_000;
/** From the bootstrap handing its port over until the agent answers there. */
export const AGENT_START_TIMEOUT_MS = 60_000;
/** How often provision asks the bootstrap how the droplet is doing. */
export const BOOTSTRAP_POLL_MS = 1_000;
/*
 * The bootstrap's own limits (cloud-init/bootstrap.py, Python: it cannot import these) live at its
 * top: 30 lines of cloud-init output, 30 s per socket, 30 s of failed apt downloads before giving up.
 * The package it accepts is exactly the size in user-data.
 */
export const CLOUD_INIT_DONE_TIMEOUT_MS = 30 * 60_000;

/** Bundles (deploy): compressed bytes on the wire, bytes once extracted, entries, and the ratio between. */
export const BUNDLE_MAX_BYTES = 200 * 1024 * 1024;
export const BUNDLE_MAX_EXTRACTED_BYTES = 1024 * 1024 * 1024;
export const BUNDLE_MAX_ENTRIES = 20_000;
/**
 * Directories one bundle entry may be nested in, and bytes its path may have: checked on each
 * entry's header before anything of it is written, so the work per entry stays small (a tree
 * 1,900 deep once took minutes of CPU while holding the API's lock). Far above what an API ships.
 */
export const BUNDLE_MAX_DEPTH = 64;
export const BUNDLE_MAX_PATH_BYTES = 1024;
export const BUNDLE_MAX_RATIO = 200;
/**
 * Below this many bytes of files, a deploy sends the whole bundle at once: hashing and asking the
 * agent which files it lacks would cost a round trip to save less than it takes.
 */
export const DELTA_MIN_BYTES = 1024 * 1024;
/** A file list entry's path, in characters (tar's own limit for a ustar+pax name is far higher). */
export const BUNDLE_PATH_MAX_CHARS = 4096;
/** Bytes either end lets wait unsent (controller) or unread (agent) before it pauses the stream. */
export const BUNDLE_HIGH_WATER_BYTES = 2 * 1024 * 1024;
/** How often a sender held back by BUNDLE_HIGH_WATER_BYTES looks whether the socket has drained. */
export const BACKPRESSURE_POLL_MS = 10;
/**
 * Bytes of a release's bundle per `bundle-chunk` message of an `export` (base64 in JSON: a third
 * more on the wire, well under WS_MAX_PAYLOAD_BYTES).
 */
export const EXPORT_CHUNK_BYTES = 512 * 1024;

/** The health gate: how long a new release may take to answer, and how often it is asked. */
export const HEALTH_TIMEOUT_MS = 120_000;
export const HEALTH_INTERVAL_MS = 250;
/**
 * How often the gate knocks on a starting worker's port: a refused connect on loopback costs next
 * to nothing, and each wait is time the new release could already be serving (half an interval
 * on average after R listens). systemd is asked whether R died only every HEALTH_INTERVAL_MS.
 */
export const HEALTH_PROBE_INTERVAL_MS = 20;
/**
 * The agent's questions to systemd over D-Bus (connect, authenticate, one call) get no answer
 * after this long: the connection is dropped, the question asked once more on a new one, then by
 * `systemctl`. sd-bus's default, which `systemctl` waits for a busy systemd (a daemon-reload).
 */
export const SYSTEMD_BUS_TIMEOUT_MS = 25_000;
/**
 * One HTTP check of a worker on loopback (the health gate, the monitor, /__plumb/health) gets no
 * answer after this long: R serves one request at a time, so a worker busy past it misses the check.
 */
export const HEALTH_PROBE_TIMEOUT_MS = 2_000;
/**
 * Drain: after a switch, an old worker stops as soon as no request is in flight on it (its open
 * connections, looked at every DRAIN_POLL_MS), and at the latest after the API's drain timeout
 * (`--drain-timeout`, default DRAIN_TIMEOUT_MS, at most DRAIN_TIMEOUT_MAX_MS).
 */
export const DRAIN_TIMEOUT_MS = 30_000;
export const DRAIN_TIMEOUT_MAX_MS = 24 * 3600_000;
export const DRAIN_POLL_MS = 100;
/**
 * Each API's stable local port (127.0.0.1 only): nginx connects there, and the agent's nftables
 * map sends each new connection on to a live worker. Below the agent's port (8731) and the workers'.
 */
export const FRONT_PORT_FIRST = 7000;
export const FRONT_PORT_LAST = 7999;
/**
 * At boot, once plumb-isolation.service has put the saved nftables table back, plumb-routing.service waits, at most this
 * long, until each API's front port reaches a worker; nginx starts after it, so its first answer
 * comes from an API, not a 502. A worker that never starts delays nginx by this much, no more.
 */
export const BOOT_ROUTING_WAIT_MS = 30_000;
/**
 * Requests one client connection (HTTP/1.1 keep-alive, or HTTP/2) may carry before nginx closes
 * it. nginx's default, 1000, closes a busy client's connection every few seconds; nginx frees a
 * connection's memory only when it closes, so the bound stays finite.
 */
export const NGINX_KEEPALIVE_REQUESTS = 100_000;
/** How often that boot wait tries each front port again (and the agent's start, each API's workers, before deciding its spare). */
export const BOOT_ROUTING_POLL_MS = 100;
/** After an nginx reload, how long the agent waits for the old workers to stop accepting, and how often it looks. */
export const NGINX_RELOAD_WAIT_MS = 10_000;
export const NGINX_RELOAD_POLL_MS = 20;
/**
 * The cloud's metadata service: it serves the droplet's user-data (the agent's enrolment secret
 * in it), so no API may reach it (the agent's nftables table, render/nat.ts; IPAddressDeny= too).
 */
export const METADATA_ADDRESS = '169.254.169.254';
/** Local ports the agent gives R workers. */
export const WORKER_PORT_FIRST = 9000;
export const WORKER_PORT_LAST = 9999;
/** Releases kept per API for rollback. */
export const RELEASES_KEPT = 5;
/** Log lines shown with a failed deploy. */
export const FAILED_DEPLOY_LOG_LINES = 20;
/** Most log lines one `plumb logs -n` may ask for. */
export const LOGS_MAX_LINES = 10_000;

/** R workers per API unless --workers says otherwise. */
export const DEFAULT_WORKERS = 1;

/** The agent's own watch over its APIs (docs/health.md): how often each worker is checked. */
export const MONITOR_INTERVAL_MS = 5_000;
/** Until a fresh droplet's nginx first runs, how often the agent looks for its pid file (a stat) to render plumb's config at once. */
export const FIRST_RENDER_POLL_MS = 200;
/** How long the agent looks for nginx's first start that way; the monitor tick renders after that. */
export const FIRST_RENDER_WAIT_MS = 60 * 60_000;
/**
 * A pid file with nginx not active this long after it was first seen is stale, and the agent looks
 * only each monitor tick from then on. Not at once: nginx writes its pid file a moment before
 * systemd calls it active, and a fresh droplet's first render must not wait for a tick.
 */
export const FIRST_RENDER_STALE_PID_MS = 10_000;
/** A worker that fails this many checks in a row (HTTP, HEALTH_PROBE_TIMEOUT_MS each) is restarted by the agent. */
export const MONITOR_FAILURES_BEFORE_RESTART = 4;
/**
 * R answers one request at a time, so a worker computing a long request misses checks too. One
 * that used this much CPU since the last check is busy, not hung: its failed checks count only
 * once it has been busy for MONITOR_BUSY_MAX_MS. (A hang, e.g. a blocked read, uses none.)
 */
export const MONITOR_BUSY_CPU_SECONDS = 0.5;
export const MONITOR_BUSY_MAX_MS = 10 * 60_000;
/** The agent restarts one worker at most this often per window; past that it leaves it (and says so). */
export const MONITOR_MAX_RESTARTS = 3;
export const MONITOR_RESTART_WINDOW_MS = 10 * 60_000;
/** Events kept on the droplet (/var/lib/plumb/events.json), oldest dropped first. */
export const EVENTS_KEPT = 500;
/** Latest events `status` returns. */
export const STATUS_EVENTS_MAX = 100;
/** How often a watching controller gets a heartbeat (load, memory, disk, workers, certificates). */
export const HEARTBEAT_INTERVAL_MS = 60_000;
/** A watch whose controller stops reading is ended once this much waits unsent. */
export const WATCH_MAX_BUFFERED_BYTES = 1024 * 1024;
/** `plumb status --watch` reconnects after losing an agent, for at most this long. */
export const WATCH_RECONNECT_TIMEOUT_MS = 5 * 60_000;
/** Alerts: this many restarts of one API within the window is "repeated restarts". */
export const ALERT_RESTARTS = 3;
export const ALERT_RESTARTS_WINDOW_MS = 10 * 60_000;
/** Alerts: a certificate closer than this to expiry (and again each day it stays so). */
export const ALERT_CERTIFICATE_DAYS = 14;
/** Webhook POSTs: per attempt, attempts per alert, pause between, alerts waiting at most. */
export const WEBHOOK_TIMEOUT_MS = 5_000;
export const WEBHOOK_ATTEMPTS = 3;
export const WEBHOOK_RETRY_DELAY_MS = 2_000;
export const WEBHOOK_QUEUE_MAX = 100;

/** HTTPS (plumb https): domains one certificate may name (Let's Encrypt allows 100; 20 is plenty here). */
export const HTTPS_MAX_DOMAINS = 20;
/** How long one certbot run may take on the droplet (ACME orders, HTTP-01 validation, retries). */
export const CERTBOT_TIMEOUT_MS = 5 * 60_000;
/** plumb https asking nginx on loopback which certificate it serves (one TLS handshake): past this, it reloads anyway. */
export const SERVED_CERTIFICATE_PROBE_MS = 3_000;
/** The controller's fetch of the ACME directory (for its terms of service): time and size. */
export const ACME_DIRECTORY_TIMEOUT_MS = 10_000;
export const ACME_DIRECTORY_MAX_BYTES = 256 * 1024;
/** plumb lb https: how long DigitalOcean may take to issue a Let's Encrypt certificate (DNS-01 on its own DNS). */
export const LB_CERTIFICATE_TIMEOUT_MS = 10 * 60_000;
/**
 * plumb lb destroy / lb https --off: how long plumb keeps asking DigitalOcean to delete a
 * certificate it still counts in use (403, for a moment after the balancer let it go), and how
 * often. Terraform's DigitalOcean provider waits 30 s, a second apart.
 */
export const LB_CERTIFICATE_DELETE_WAIT_MS = 30_000;
export const LB_CERTIFICATE_DELETE_RETRY_MS = 1_000;
/** The controller's check that each domain resolves to the droplet: per query. */
export const DNS_CHECK_TIMEOUT_MS = 5_000;

/** How long a plumb process waits for another one to finish writing its local state (droplets.json). */
export const LOCAL_STATE_LOCK_WAIT_MS = 15_000;

/** One `log` message's entries stay under this many bytes of text, well inside WS_MAX_PAYLOAD_BYTES. */
export const LOG_BATCH_MAX_BYTES = 1024 * 1024;
/** A journal entry's message longer than this is cut (journald's own LineMax is 48 KiB). */
export const LOG_ENTRY_MAX_BYTES = 64 * 1024;

/*
 * `logs -f` reads new entries from journald's file ahead of journald's notice (250-500 ms late:
 * docs/benchmarks.md). The file's bytes are what the APIs wrote, so every read is bounded by these.
 */
/** How often a follow reads the journal file's header to see whether entries were added. */
export const JOURNAL_POLL_MS = 20;
/**
 * Bytes of journal objects one look walks at most, and entries it reads at most; the rest waits for
 * the next look. The reads are synchronous: a look of 4 MiB took 0.7 s of the agent's event loop
 * on a loaded machine (~40 µs an entry), one of 64 KiB and 256 entries takes ~10 ms, and a
 * backlog is still read at ~12,000 entries a second.
 */
export const JOURNAL_SCAN_MAX_BYTES = 64 * 1024;
export const JOURNAL_LOOK_MAX_ENTRIES = 256;
/** An entry with more fields than this is left to journalctl. */
export const JOURNAL_ENTRY_MAX_FIELDS = 1024;
/** A field larger than this (journald compresses those over 512 bytes anyway) is left to journalctl, with its entry. */
export const JOURNAL_FIELD_MAX_BYTES = LOG_ENTRY_MAX_BYTES + 1024;
/** Fields remembered by their place in the file (journald writes each distinct field once and points to it). */
export const JOURNAL_FIELD_CACHE_ENTRIES = 4096;
/** Entries shown from the file that journalctl has not printed yet; past it the file read waits for journalctl. */
export const JOURNAL_AHEAD_MAX_ENTRIES = 2000;

/** The agent pings every controller socket this often; one that has not answered the last ping is closed. */
export const WS_PING_INTERVAL_MS = 15_000;
/** A deploy whose bundle stops arriving for this long fails (and frees the API for the next deploy). */
export const UPLOAD_IDLE_TIMEOUT_MS = 30_000;

/**
 * An API worker's memory when the deploy gives no --memory: systemd's MemoryMax= as a share of
 * the droplet's RAM, so one runaway R process is stopped (and restarted) before it starves the
 * agent, nginx and the other APIs.
 */
export const API_MEMORY_MAX_DEFAULT = '80%';
/** The kernel's OOM killer picks R workers before the agent (0) and sshd (-1000 at worst). */
export const API_OOM_SCORE_ADJUST = 500;

/** Agent upgrades (plumb upgrade): the package's bytes on the wire and unpacked, and its entries. */
export const AGENT_PACKAGE_MAX_BYTES = 32 * 1024 * 1024;
export const AGENT_PACKAGE_MAX_EXTRACTED_BYTES = 128 * 1024 * 1024;
export const AGENT_PACKAGE_MAX_ENTRIES = 200;
/** How long the new agent's `--version` may take before it counts as broken (nothing switched yet). */
export const AGENT_SMOKE_TIMEOUT_MS = 30_000;
/**
 * The new agent has this long to start, serve and confirm; otherwise a guard systemd started
 * beforehand puts the previous agent back. The controller waits a little longer for the outcome.
 */
export const AGENT_CONFIRM_TIMEOUT_MS = 60_000;
export const AGENT_UPGRADE_WAIT_MS = AGENT_CONFIRM_TIMEOUT_MS + 45_000;
/** Agent versions kept side by side on the droplet: the current one and the one before. */
export const AGENT_VERSIONS_KEPT = 2;
/** Controller keys one droplet may trust. */
export const CONTROLLER_KEYS_MAX = 32;
/** Features an agent reads from a socket's CONTROLLER_FEATURES_HEADER at most (the header itself is capped by node's maxHeaderSize). */
export const CONTROLLER_FEATURES_MAX = 64;

/** R packages (issue 10): most packages one deploy may ask for (its direct needs; dependencies come on top). */
export const R_PACKAGES_MAX = 500;

/** The longest environment value (--env, a secret), in characters: one line of a worker's env file. */
export const ENV_VALUE_MAX_CHARS = 32 * 1024;
/**
 * The warm spare's "auto" policy (issue 14, agent ops/spare-policy.ts): after a deploy a spare is
 * kept only if the droplet's MemAvailable, less the spare's expected size, stays above this
 * reserve: SPARE_RESERVE_MIN_BYTES, or SPARE_RESERVE_SHARE of MemTotal on bigger droplets. 256 MiB
 * is what Debian, nginx, the agent (~75 MiB) and a worker's growth under a request need on the
 * smallest droplet (512 MiB, where 20% would be 100 MiB); 20% keeps the page cache and the API's
 * own growth room on bigger ones, where a spare (~80 MiB) is a small share anyway. The kernel's
 * OOM killer takes an API worker first (API_OOM_SCORE_ADJUST), a spare included: the reserve is
 * so that it need not.
 */
export const SPARE_RESERVE_MIN_BYTES = 256 * 1024 * 1024;
export const SPARE_RESERVE_SHARE = 0.2;
/**
 * A spare's expected resident size when neither an earlier spare of the API nor one of its workers
 * was measured: R with plumber loaded waits in 79 MiB (docs/benchmarks.md), rounded up.
 */
export const SPARE_EXPECTED_BYTES = 100 * 1024 * 1024;
/**
 * A spare's handover until it answers when none of the API's was measured yet: 0.30 s in the quiet
 * bench (docs/benchmarks.md, "starting R + waiting" with a spare). Auto keeps a spare only if the
 * cold start it replaces took at least twice the spare's time (issue 14's 2x).
 */
export const SPARE_HANDOVER_FLOOR_MS = 300;
/**
 * An API's warm spares restarted this many times in all since one last took a release: the agent
 * records a `spare-crashing` event (and alert) once, since every deploy meanwhile starts cold.
 */
export const SPARE_CRASHES_ALERT = 3;
/**
 * The file auto's measurements are remembered in across agent restarts (agent ops/spare-measured.ts)
 * is read only up to this size: about 100 bytes per API in the state, so a bigger one is not the
 * agent's (a hand edit, a damaged disk) and auto starts with none.
 */
export const SPARE_MEASURED_MAX_BYTES = 1024 * 1024;
/**
 * A deploy that finds the API's spare still loading (a redeploy seconds after the last) waits for
 * it until it has loaded for twice the API's last cold start, or this long when no cold start was
 * measured yet (a cold start of a one-file API takes ~0.8 s, docs/benchmarks.md). Polled every
 * SPARE_LOADING_POLL_MS.
 */
export const SPARE_LOADING_WAIT_MS = 6_000;
export const SPARE_LOADING_POLL_MS = 20;
/** The agent's start lets one spare load at a time: it asks the journal whether the last one is ready this often. */
export const SPARE_LOADED_POLL_MS = 250;
/** The lab's crash point that kills a spare at its handover waits at most this long for it to be gone. */
export const CRASH_POINT_KILL_WAIT_MS = 10_000;
/** Secrets one API may hold (plumb secrets): each is a line of every worker's environment file. */
export const SECRETS_MAX = 100;
/** How long apt may wait for another apt/dpkg to let go of its lock (apt's DPkg::Lock::Timeout), in seconds. */
export const APT_LOCK_TIMEOUT_SECONDS = 300;
/** One apt-get install, or one R install of packages from a repository, may take this long. */
export const R_PACKAGES_INSTALL_TIMEOUT_MS = 60 * 60_000;
/** Reading a CRAN-like repository's index (src/contrib/PACKAGES): time and size (CRAN's is ~15 MiB). */
export const R_REPO_INDEX_TIMEOUT_MS = 60_000;
export const R_REPO_INDEX_MAX_BYTES = 64 * 1024 * 1024;
/** Output lines of a failed apt or R install sent with the error, out of the last ones kept while it runs. */
export const R_PACKAGES_FAILED_LOG_LINES = 30;
export const R_PACKAGES_OUTPUT_KEPT_LINES = 5_000;
/** Where source builds come from unless the API or the droplet names another CRAN-like repository. */
export const DEFAULT_CRAN_URL = 'https://cloud.r-project.org';

/** The agent's plain-HTTP health answer for load balancers, on loopback only; nginx proxies DROPLET_HEALTH_PATH there. */
export const DROPLET_HEALTH_PORT = 8732;
/**
 * V8 flags the agent runs with (its unit's ExecStart in cloud-init/user-data.yaml, and the
 * upgrade drop-ins): a 1 MiB young generation and V8's size-over-speed heuristics take ~6 MiB
 * off the idle agent's ~29 MiB of its own (anonymous) memory; its work is waiting on processes
 * and sockets, not JavaScript throughput (docs/benchmarks.md).
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--optimize-for-size'] as const;
/** At most this many droplets are made by one `provision --group --count N`. */
export const GROUP_PROVISION_MAX = 10;

/** `plumb adopt`: how long SSH may take to connect, and the whole session (apt installs R, nginx, ufw, certbot). */
export const ADOPT_SSH_CONNECT_TIMEOUT_S = 20;
export const ADOPT_SSH_SESSION_TIMEOUT_MS = 20 * 60_000;
/** How long adopt's check waits for DigitalOcean's metadata service (it answers at once on a droplet; elsewhere nothing does). */
export const ADOPT_METADATA_TIMEOUT_S = 3;
/** How much of SSH's stderr (apt's output) a failed adopt shows. */
export const ADOPT_LOG_LINES = 30;
/**
 * `plumb adopt --import`: at most this many of plumber's old do_deploy_api() APIs are taken over
 * in one adopt, each one's code (a gzip tar, base64 on the SSH session) at most BUNDLE_MAX_BYTES.
 */
export const LEGACY_APIS_MAX = 32;
/** After plumb's server took over port 80, how long an old API's unit may finish the requests nginx had sent it before it stops. */
export const LEGACY_DRAIN_MS = 30_000;

/**
 * Every limit and wait in plumb, named once. Both ends import these; a test crosses each one.
 */

/** The agent's TLS WebSocket port on each droplet (opened in ufw next to 22 and 80). */
export const AGENT_PORT = 8731;

/** DigitalOcean refuses user_data over 64 KiB. */
export const USER_DATA_MAX_BYTES = 64 * 1024;

/** One-time enrolment secret: 128 bits. */
export const ENROLMENT_SECRET_BYTES = 16;

/** A controller token lives this long; the agent refuses tokens without `exp` or living longer. */
export const TOKEN_TTL_SECONDS = 60;
export const TOKEN_MAX_LIFETIME_SECONDS = 300;
/** Clock difference tolerated between controller and droplet. */
export const TOKEN_CLOCK_TOLERANCE_SECONDS = 30;
/** Token ids remembered against replay (each until its token expires). */
export const REPLAY_CACHE_MAX_ENTRIES = 100_000;

/** Largest single WebSocket message either end accepts. */
export const WS_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;
/** Open sockets one address may hold on the agent. */
export const AGENT_MAX_CONNECTIONS_PER_PEER = 16;
/** Requests one socket may have in flight. */
export const AGENT_MAX_PENDING_REQUESTS = 32;
/** How long the agent lets in-flight operations finish on SIGTERM. */
export const AGENT_SHUTDOWN_GRACE_MS = 10_000;
/** Bound on a TLS handshake + HTTP upgrade. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** How often the agent looks at cloud-init while it runs. */
export const CLOUD_INIT_POLL_MS = 1_000;

/** Controller waits (provision). */
export const DROPLET_ACTIVE_TIMEOUT_MS = 5 * 60_000;
export const AGENT_ANSWER_TIMEOUT_MS = 15 * 60_000;
export const CLOUD_INIT_DONE_TIMEOUT_MS = 30 * 60_000;

/** Bundles (deploy): compressed bytes on the wire, bytes once extracted, entries, and the ratio between. */
export const BUNDLE_MAX_BYTES = 200 * 1024 * 1024;
export const BUNDLE_MAX_EXTRACTED_BYTES = 1024 * 1024 * 1024;
export const BUNDLE_MAX_ENTRIES = 20_000;
export const BUNDLE_MAX_RATIO = 200;
/** Chunk size the controller streams a bundle in; it waits while more than the high-water mark is unsent. */
export const BUNDLE_CHUNK_BYTES = 256 * 1024;
export const BUNDLE_HIGH_WATER_BYTES = 2 * 1024 * 1024;

/** The health gate: how long a new release may take to answer, and how often it is asked. */
export const HEALTH_TIMEOUT_MS = 120_000;
export const HEALTH_INTERVAL_MS = 250;
/** How long old workers keep running after nginx switched, so requests in flight finish. */
export const DRAIN_MS = 3_000;
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

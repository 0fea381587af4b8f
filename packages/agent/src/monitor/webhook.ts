import { setTimeout as delay } from 'node:timers/promises';
import { ALERT_RESTARTS, ALERT_RESTARTS_WINDOW_MS, EVENTS_KEPT, WEBHOOK_ATTEMPTS, WEBHOOK_QUEUE_MAX, WEBHOOK_RETRY_DELAY_MS, WEBHOOK_TIMEOUT_MS, type AgentEvent, type WebhookPayload } from '@plumb/shared';
import { log } from '../log.js';
import { AGENT_VERSION } from '../version.js';
import type { EventLog } from './events.js';
import { alertFor } from './policy.js';

export type DropletIdentity = WebhookPayload['droplet'];

/** Where a webhook URL may be logged: its origin only (the rest may hold a token). */
export const origin = (url: string) => new URL(url).origin;

/** One POST of an alert, bounded by a timeout; never throws. Redirects are not followed. */
export async function post(url: string, payload: WebhookPayload, signal?: AbortSignal): Promise<{ ok: boolean; detail: string }> {
  const timeout = AbortSignal.timeout(WEBHOOK_TIMEOUT_MS);
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': `plumb-agent/${AGENT_VERSION}` },
      body: JSON.stringify(payload),
      redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    await res.body?.cancel();
    return { ok: res.status >= 200 && res.status < 300, detail: `HTTP ${res.status}` };
  } catch (err) {
    if (timeout.aborted) return { ok: false, detail: `no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s` };
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { ok: false, detail: cause?.code ?? cause?.message ?? (err as Error).message };
  }
}

export function alertText(alert: WebhookPayload['alert'], event: AgentEvent | null, droplet: DropletIdentity): string {
  if (!event) return `plumb alerts are on for droplet ${droplet.hostname}`;
  const where = event.api ? `${event.api}${event.port !== null ? ` (worker ${event.port})` : ''}` : droplet.hostname;
  const what: Record<WebhookPayload['alert'], string> = {
    down: 'is down',
    up: 'is up again',
    'repeated-restarts': `keeps restarting (${ALERT_RESTARTS} or more times within ${ALERT_RESTARTS_WINDOW_MS / 60_000} min); the latest`,
    'certificate-expiring': 'has a certificate about to expire',
    'spare-crashing': 'has a warm spare that keeps crashing',
    test: '',
  };
  return `[${droplet.hostname}] ${where} ${what[alert]}: ${event.detail}`;
}

/**
 * Sends the alerts among the events to the webhook in the agent's state, in order, one at a time,
 * each tried WEBHOOK_ATTEMPTS times. Events only queue here (at most WEBHOOK_QUEUE_MAX, oldest
 * dropped), so a slow or dead receiver never holds up the monitor.
 */
export class Alerter {
  private readonly queue: WebhookPayload[] = [];
  private sending = false;
  private readonly stopping = new AbortController();
  private readonly lastRestartsAlert = new Map<string, number>();

  constructor(
    private readonly log: EventLog,
    private readonly webhook: () => string | null,
    private readonly droplet: DropletIdentity,
  ) {}

  /** Decides whether `event` is an alert (see policy.ts) and queues it if a webhook is set. */
  notify(event: AgentEvent): void {
    if (this.webhook() === null || this.stopping.signal.aborted) return;
    const now = Date.now();
    const alert = alertFor(event, this.log.latest(EVENTS_KEPT), this.lastRestartsAlert.get(event.api ?? ''), now);
    if (alert === null) return;
    if (alert === 'repeated-restarts') this.lastRestartsAlert.set(event.api ?? '', now);
    if (this.queue.length >= WEBHOOK_QUEUE_MAX) {
      const dropped = this.queue.shift();
      log.warn('alert dropped: the webhook is not keeping up', { alert: dropped?.alert, event: dropped?.event?.id });
    }
    this.queue.push({ source: 'plumb-agent', alert, droplet: this.droplet, text: alertText(alert, event, this.droplet), event });
    if (!this.sending) void this.drain();
  }

  stop(): void {
    this.stopping.abort();
    this.queue.length = 0;
  }

  private async drain(): Promise<void> {
    this.sending = true;
    try {
      for (let payload = this.queue.shift(); payload; payload = this.queue.shift()) {
        for (let attempt = 1; attempt <= WEBHOOK_ATTEMPTS; attempt++) {
          // Read each time: `plumb alerts --off` (or a new URL) applies to what is still queued.
          const url = this.webhook();
          if (url === null || this.stopping.signal.aborted) {
            this.queue.length = 0;
            return;
          }
          const outcome = await post(url, payload, this.stopping.signal);
          if (outcome.ok) break;
          log.warn('alert not delivered', { to: origin(url), alert: payload.alert, attempt, detail: outcome.detail });
          if (attempt < WEBHOOK_ATTEMPTS) await delay(WEBHOOK_RETRY_DELAY_MS * attempt, undefined, { signal: this.stopping.signal }).catch(() => {});
        }
      }
    } finally {
      this.sending = false;
    }
  }
}


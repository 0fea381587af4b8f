import { HEARTBEAT_INTERVAL_MS, PlumbError, WATCH_MAX_BUFFERED_BYTES, type AgentEvent, type Heartbeat, type WatchResult } from '@plumb/shared';
import type { StateStore } from '../state.js';
import { events as eventLog, type EventLog } from './events.js';
import { heartbeat } from './heartbeat.js';

/** Where a watch sends what it sees: the session adds the request id. */
export interface WatchChannel {
  send(message: { type: 'event'; event: AgentEvent } | { type: 'heartbeat'; heartbeat: Heartbeat }): void;
  /** Bytes waiting unsent on the socket. */
  buffered(): number;
  signal: AbortSignal;
}

/**
 * A controller's `watch`: the stored events after `sinceEventId` (when it reconnects), a
 * heartbeat, then every event as it is recorded and a heartbeat each HEARTBEAT_INTERVAL_MS, until
 * the controller cancels or goes away. A controller that stops reading is cut off rather than
 * buffered for without end.
 */
export function watch(sinceEventId: number | null, channel: WatchChannel, state: StateStore, log: EventLog = eventLog): Promise<WatchResult> {
  return new Promise<WatchResult>((resolve, reject) => {
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    let unsubscribe = () => {};
    const end = (err?: Error) => {
      clearInterval(timer);
      unsubscribe();
      channel.signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve({ events: sent });
    };
    const onAbort = () => end();
    const push = (event: AgentEvent) => {
      if (channel.buffered() > WATCH_MAX_BUFFERED_BYTES) return end(new PlumbError('WATCH_TOO_SLOW', 'the controller did not keep up with the events; watch again'));
      channel.send({ type: 'event', event });
      sent++;
    };
    const beat = () =>
      void heartbeat(state.get(), log.lastId).then(
        (h) => !channel.signal.aborted && channel.send({ type: 'heartbeat', heartbeat: h }),
        () => {},
      );
    if (channel.signal.aborted) return end();
    channel.signal.addEventListener('abort', onAbort, { once: true });
    // Replay and subscription in one synchronous step: nothing recorded in between is lost.
    if (sinceEventId !== null) for (const event of log.after(sinceEventId)) push(event);
    unsubscribe = log.subscribe(push);
    beat();
    timer = setInterval(beat, HEARTBEAT_INTERVAL_MS);
  });
}

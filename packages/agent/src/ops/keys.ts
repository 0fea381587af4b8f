import { CONTROLLER_KEYS_MAX, PlumbError, type ControllerKey, type KeysResult } from '@plumb/shared';
import type { TokenVerifier } from '../auth.js';
import type { ConfigStore } from '../config.js';
import { log } from '../log.js';
import { events } from '../monitor/events.js';

/**
 * The controller keys this droplet trusts (`plumb keys`): kept in the agent's config, so they
 * survive restarts and upgrades, and handed to the token verifier at once. A revoked key's open
 * sockets are closed; its next token gets 401.
 */
export class KeyRing {
  constructor(
    private readonly config: ConfigStore,
    private readonly verifier: TokenVerifier,
    private readonly closeSocketsOf: (kid: string) => void,
  ) {}

  list(callerKid: string, changed = false): KeysResult {
    const keys = this.config.get().controllerKeys.map((k) => ({ kid: k.kid, name: k.name ?? null, x: k.jwk.x, addedAt: k.addedAt ?? null, caller: k.kid === callerKid }));
    return { keys, changed };
  }

  async add(key: ControllerKey, callerKid: string): Promise<KeysResult> {
    let unchanged = false;
    // Checked inside the config's own queue: two changes at once each see the other's result.
    const config = await this.config.update((c) => {
      const keys = c.controllerKeys;
      callerStillTrusted(keys, callerKid);
      const same = keys.find((k) => k.kid === key.kid || k.jwk.x === key.jwk.x);
      if (same && same.jwk.x === key.jwk.x && same.kid === key.kid) {
        unchanged = true;
        return c;
      }
      if (same) throw new PlumbError('KEY_CONFLICT', `the droplet already trusts a different key with id ${key.kid}`, 'check the key you were given');
      if (keys.some((k) => k.name === key.name)) throw new PlumbError('KEY_NAME_TAKEN', `the droplet already trusts a key named "${key.name ?? ''}"`, 'choose another --name, or revoke that key first');
      if (keys.length >= CONTROLLER_KEYS_MAX) throw new PlumbError('TOO_MANY_KEYS', `the droplet trusts ${CONTROLLER_KEYS_MAX} keys already`, 'revoke keys no longer used');
      return { ...c, controllerKeys: [...keys, { ...key, addedAt: new Date().toISOString() }] };
    });
    if (unchanged) return this.list(callerKid);
    await this.verifier.setKeys(config.controllerKeys);
    events.record({ kind: 'key-added', detail: `controller key ${key.name ?? ''} (${key.kid}) added by ${this.nameOf(callerKid)}` });
    log.info('controller key added', { kid: key.kid, name: key.name, by: callerKid });
    return this.list(callerKid, true);
  }

  async revoke(which: string, callerKid: string): Promise<KeysResult> {
    let key!: ControllerKey;
    // Checked inside the config's own queue: two revokes at once (each of the other's key, say)
    // cannot both pass the last-key check and leave the droplet trusting no one.
    const config = await this.config.update((c) => {
      const keys = c.controllerKeys;
      callerStillTrusted(keys, callerKid);
      const found = keys.find((k) => k.kid === which || k.name === which);
      if (!found) throw new PlumbError('KEY_UNKNOWN', `the droplet trusts no key named or with id "${which}"`, 'see `plumb keys list`');
      if (found.kid === callerKid) throw new PlumbError('KEY_IN_USE', `"${which}" is the key this plumb signs with; revoking it would lock this machine out`, 'revoke it from another machine whose key the droplet trusts');
      if (keys.length === 1) throw new PlumbError('LAST_KEY', `"${which}" is the only key the droplet trusts`, 'add another key first');
      key = found;
      return { ...c, controllerKeys: keys.filter((k) => k.kid !== found.kid) };
    });
    await this.verifier.setKeys(config.controllerKeys);
    this.closeSocketsOf(key.kid);
    events.record({ kind: 'key-revoked', detail: `controller key ${key.name ?? ''} (${key.kid}) revoked by ${this.nameOf(callerKid)}` });
    log.info('controller key revoked', { kid: key.kid, name: key.name, by: callerKid });
    return this.list(callerKid, true);
  }

  private nameOf(kid: string): string {
    const key = this.config.get().controllerKeys.find((k) => k.kid === kid);
    return key?.name ? `${key.name} (${kid})` : kid;
  }
}

/** A request from a socket whose key was revoked meanwhile changes nothing. */
function callerStillTrusted(keys: readonly ControllerKey[], callerKid: string): void {
  if (!keys.some((k) => k.kid === callerKid)) throw new PlumbError('KEY_REVOKED', 'the key this plumb signs with was revoked meanwhile', 'ask someone whose key the droplet trusts');
}

import { AGENT_PORT } from '@plumb/shared';
import type { UserDataInput } from '@plumb/controller/cloud-init';

/** What provision (and adopt) render a droplet's base from: one typical droplet for the tests of both. */
export const typicalUserData: UserDataInput = {
  agentConfig: {
    dropletUuid: '6f1c1f4e-3b9a-4c39-9d0e-2f4b8f0b6a11',
    dropletName: 'plumb-web-1',
    port: AGENT_PORT,
    controllerKeys: [{ kid: 'ctl-2026-11-a', jwk: { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' } }],
    enrolmentSecret: '00112233445566778899aabbccddeeff',
  },
  agentPackage: { version: '0.1.0', sha512: 'f'.repeat(128), bytes: 300_000 },
};

/** The same droplet under another name (it lands in write_files as JSON). */
export const namedUserData = (dropletName: string): UserDataInput => ({ ...typicalUserData, agentConfig: { ...typicalUserData.agentConfig, dropletName } });

import type { AgentState } from '../state.js';
import type { NginxModel } from '../render/model.js';

/** nginx sees every API's live workers, the forward, and the certificates HTTPS serves. */
export function nginxModel(state: AgentState): NginxModel {
  return {
    apis: Object.values(state.apis).map((api) => ({ name: api.name, path: api.path, instances: api.workers.map((w) => ({ port: w.port })) })),
    forward: state.forward,
    certificates: (state.https?.certificates ?? []).map((c) => ({ name: c.name, domains: c.domains })),
  };
}

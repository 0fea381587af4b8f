import type { AgentState } from '../state.js';
import type { NginxModel } from '../render/model.js';

/** What nginx and the nftables map serve: every API's front port and live workers, the forward, the certificates HTTPS serves. */
export function nginxModel(state: AgentState): NginxModel {
  return {
    // An API without a front port yet (older state) is refused by the renderers; reconcile gives it one first.
    apis: Object.values(state.apis).map((api) => ({ name: api.name, path: api.path, frontPort: api.frontPort ?? 0, instances: api.workers.map((w) => ({ port: w.port })) })),
    forward: state.forward,
    certificates: (state.https?.certificates ?? []).map((c) => ({ name: c.name, domains: c.domains })),
  };
}

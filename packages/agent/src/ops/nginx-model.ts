import type { AgentState } from '../state.js';
import type { NginxModel } from '../render/model.js';

/** nginx sees every API's live workers, and the forward. */
export function nginxModel(state: AgentState): NginxModel {
  return {
    apis: Object.values(state.apis).map((api) => ({ name: api.name, path: api.path, instances: api.workers.map((w) => ({ port: w.port })) })),
    forward: state.forward,
  };
}

import { CLOUD_INIT_POLL_MS, PlumbError, type AgentMessage, type CloudInitStatus, type Hello, type Request } from '@plumb/shared';

/** What requests read about the droplet; the real one asks cloud-init and /proc. */
export interface Facts {
  hello(): Promise<Hello>;
  cloudInit(): Promise<CloudInitStatus>;
  cloudInitFinished(status: CloudInitStatus): boolean;
}

/** One request, answered once; events it produces on the way go out through `push`. */
export async function handleRequest(request: Request, facts: Facts, push: (message: AgentMessage) => void): Promise<unknown> {
  switch (request.type) {
    case 'facts':
      return facts.hello();
    case 'cloud-init-wait':
      return waitForCloudInit(request.timeoutMs, facts, push);
  }
}

/** Pushes each change of cloud-init's status until it has finished; the result is the last one. */
async function waitForCloudInit(timeoutMs: number, facts: Facts, push: (message: AgentMessage) => void): Promise<CloudInitStatus> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const status = await facts.cloudInit();
    const key = JSON.stringify(status);
    if (key !== last) push({ type: 'cloud-init', cloudInit: status });
    last = key;
    if (facts.cloudInitFinished(status)) return status;
    if (Date.now() > deadline) throw new PlumbError('CLOUD_INIT_TIMEOUT', `cloud-init still ${status.status} after ${Math.round(timeoutMs / 1000)} s`, 'look at /var/log/cloud-init-output.log on the droplet');
    await new Promise((resolve) => setTimeout(resolve, CLOUD_INIT_POLL_MS));
  }
}

import { Router, type Request } from 'express';
import { notFound, unprocessable } from './errors.js';
import { dropletStatus } from './droplet-view.js';
import type { Machines } from './machines.js';
import { paginate } from './pagination.js';
import { pathId, requestUrl } from './request.js';
import { timestamp, type ActionRecord, type DropletRecord, type Store } from './store.js';

/** The droplet actions the lab can carry out, and the machine operation behind each. */
const machineOps = {
  reboot: (m: Machines, id: number) => m.reboot(id),
  power_off: (m: Machines, id: number) => m.powerOff(id),
  power_on: (m: Machines, id: number) => m.powerOn(id),
  shutdown: (m: Machines, id: number) => m.shutdown(id),
} as const;
type ActionType = keyof typeof machineOps;
const isActionType = (type: unknown): type is ActionType => typeof type === 'string' && Object.hasOwn(machineOps, type);

export function recordAction(store: Store, type: string, droplet: DropletRecord): ActionRecord {
  const action: ActionRecord = {
    id: store.nextId('action'),
    type,
    status: 'in-progress',
    startedAt: timestamp(),
    completedAt: null,
    resourceId: droplet.id,
    region: droplet.region,
  };
  store.actions.set(action.id, action);
  return action;
}

function finish(action: ActionRecord, ok: boolean): void {
  action.status = ok ? 'completed' : 'errored';
  action.completedAt = timestamp();
}

/** A create action has no operation to wait for: it is done when the droplet first leaves `new`. */
function refresh(action: ActionRecord, machines: Machines): ActionRecord {
  if (action.type === 'create' && action.status === 'in-progress') {
    if (dropletStatus(machines.inspect(action.resourceId)) !== 'new') finish(action, true);
  }
  return action;
}

export const actionHref = (req: Request, id: number) => `${requestUrl(req).origin}/v2/actions/${id}`;

function render(action: ActionRecord) {
  return {
    id: action.id,
    status: action.status,
    type: action.type,
    started_at: action.startedAt,
    completed_at: action.completedAt,
    resource_id: action.resourceId,
    resource_type: 'droplet',
    region: action.region,
    region_slug: action.region.slug,
  };
}

function listed(req: Request, actions: ActionRecord[], machines: Machines) {
  const page = paginate(req, actions);
  return { actions: page.items.map((a) => render(refresh(a, machines))), links: page.links, meta: page.meta };
}

/** /v2/actions: every action on the account. */
export function actionRoutes(store: Store, machines: Machines): Router {
  const router = Router();
  router.get('/', (req, res) => {
    res.json(listed(req, [...store.actions.values()], machines));
  });
  router.get('/:actionId', (req, res) => {
    const id = pathId(req, 'actionId');
    const action = id === undefined ? undefined : store.actions.get(id);
    if (action === undefined) throw notFound();
    res.json({ action: render(refresh(action, machines)) });
  });
  return router;
}

/**
 * /v2/droplets/:id/actions. The machine operation runs in the background, as DigitalOcean's do: the
 * POST answers 201 with the action in progress, and the action records how the operation ended.
 */
export function dropletActionRoutes(store: Store, machines: Machines, log: (line: string) => void): Router {
  const router = Router({ mergeParams: true });
  const droplet = (req: Request) => {
    const id = pathId(req, 'id');
    const found = id === undefined ? undefined : store.droplets.get(id);
    if (found === undefined) throw notFound();
    return found;
  };
  const ofDroplet = (d: DropletRecord) => [...store.actions.values()].filter((a) => a.resourceId === d.id);

  router.get('/', (req, res) => {
    res.json(listed(req, ofDroplet(droplet(req)), machines));
  });

  router.get('/:actionId', (req, res) => {
    const id = pathId(req, 'actionId');
    const action = ofDroplet(droplet(req)).find((a) => a.id === id);
    if (action === undefined) throw notFound();
    res.json({ action: render(refresh(action, machines)) });
  });

  router.post('/', (req, res) => {
    const target = droplet(req);
    const body: unknown = req.body;
    const type = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).type : undefined;
    if (!isActionType(type)) {
      const supported = Object.keys(machineOps).join(', ');
      throw unprocessable(`${JSON.stringify(type ?? null)} is not a droplet action the lab supports (${supported}).`);
    }
    if (target.destroying !== undefined || ofDroplet(target).some((a) => refresh(a, machines).status === 'in-progress')) {
      throw unprocessable('Droplet already has a pending event.');
    }
    const action = recordAction(store, type, target);
    machineOps[type](machines, target.id).then(
      () => finish(action, true),
      (err: unknown) => {
        log(`do-standin: ${type} of droplet ${target.id} failed: ${err instanceof Error ? err.message : String(err)}`);
        finish(action, false);
      },
    );
    res.status(201).json({ action: render(action) });
  });

  return router;
}

import { Router } from 'express';

export interface Account {
  droplet_limit: number;
  floating_ip_limit: number;
  email: string;
  name: string;
  uuid: string;
  email_verified: boolean;
  status: 'active';
  status_message: string;
  team: { uuid: string; name: string };
}

export function labAccount(dropletLimit: number): Account {
  return {
    droplet_limit: dropletLimit,
    floating_ip_limit: 3,
    email: 'lab@plumb.invalid',
    name: 'plumb lab',
    uuid: '6a0c4a3e-3a8f-4c43-9b36-6f2b3e0c1d01',
    email_verified: true,
    status: 'active',
    status_message: '',
    team: { uuid: '0e3c2c5b-8d3f-4f7a-a0a5-2f1c6b7d9e11', name: 'My Team' },
  };
}

export function accountRoutes(account: Account): Router {
  const router = Router();
  router.get('/', (_req, res) => {
    res.json({ account });
  });
  return router;
}

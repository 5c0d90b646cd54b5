// GET /download/rear-update and the packages (issue 15): stub, being written.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

export function downloadRoutes(app: FastifyInstance, ctx: ServerContext): void {
  void app;
  void ctx;
}

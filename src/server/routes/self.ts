// GET /api/v1/token (issue 15, for `doctor`): what the presented token is. Stub, being written.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

export function selfRoutes(app: FastifyInstance, ctx: ServerContext): void {
  void app;
  void ctx;
}

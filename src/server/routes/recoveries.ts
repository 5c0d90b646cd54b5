// Recoveries over HTTP (docs/recoveries.md). STUB: filled in by the recoveries work.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

export function recoveryRoutes(_app: FastifyInstance, _ctx: ServerContext): void {}

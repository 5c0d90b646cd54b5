// The web console (docs/console.md). STUB: filled in by the console work.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

export function consoleRoutes(_app: FastifyInstance, _ctx: ServerContext): void {}

// The console's live pages: incident view, pending machines, recoveries and their logs, and
// the server-sent event streams that keep them current (docs/console.md).
// STUB: filled in by the live-console work; console/routes.ts calls livePages.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../../context.ts';

export function livePages(_app: FastifyInstance, _ctx: ServerContext): void {}

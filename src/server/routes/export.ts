// The signed offline export over HTTP (docs/export.md). STUB: filled in by the export work.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

export function exportRoutes(_app: FastifyInstance, _ctx: ServerContext): void {}

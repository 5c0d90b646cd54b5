// `rear-update serve` behind the CLI: start, say where and with which key, stop cleanly on
// SIGINT/SIGTERM. Loaded on demand by src/cli/commands/serve.ts, and left out of the rescue
// executable (scripts/build.mjs), which must not carry the server's native SQLite module.

import { loadConfig, type ConfigFlags } from './config.ts';
import { startServer } from './serve.ts';

export { runCheck } from './check-command.ts';
// For `doctor --role server` (src/cli/doctor/server.ts): the stores as serve opens them, and the check.
export { openBlobs, openLogBytes, openMetadata } from './serve.ts';
export { checkStore } from './store-check.ts';

export async function runServe(flags: ConfigFlags, say: (line: string) => void): Promise<void> {
  const cfg = loadConfig(flags);
  const s = await startServer(cfg);
  say(`serving ${s.url}  data ${cfg.data}`);
  say(`signing key ${s.fingerprint}: rescue images trust ${cfg.data}/server.pub (also GET ${s.url}/api/v1/server-key)`);
  if (s.adminToken) say(`first start: admin token written to ${cfg.data}/admin.token (0600)`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      say(`${sig}: closing`);
      s.close().then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

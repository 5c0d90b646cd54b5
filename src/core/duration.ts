// The one parser for spans of time that people type: `90s`, `15m`, `12h`, `30d`, `1w`,
// `2h30m`, or plain seconds. Used for apply's --wait, the token expiry of `admin token create
// --expires`, and the `--since` of `admin audit`; callers decide which error a bad value is.

const UNIT_S = { w: 604_800, d: 86_400, h: 3600, m: 60, s: 1 } as const;

/** Units largest first, each at most once: 1w2d, 2h30m, 90s. */
const SPAN = /^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Seconds, or null when `text` is not a duration. */
export function parseDuration(text: string): number | null {
  const t = typeof text === 'string' ? text.trim() : '';
  if (/^\d{1,12}$/.test(t)) return Number(t);
  const m = SPAN.exec(t);
  if (!m || t === '' || t.length > 40) return null;
  const [, w, d, h, mi, s] = m;
  const n = Number(w ?? 0) * UNIT_S.w + Number(d ?? 0) * UNIT_S.d + Number(h ?? 0) * UNIT_S.h + Number(mi ?? 0) * UNIT_S.m + Number(s ?? 0);
  return Number.isSafeInteger(n) ? n : null;
}

/** The examples every message about a malformed duration gives. */
export const DURATION_EXAMPLES = '90s, 15m, 12h, 30d, 1w, 2h30m or plain seconds';

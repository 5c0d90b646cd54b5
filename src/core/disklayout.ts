// The disks of a host as ReaR saw them when the host's rescue image was made: the `disk`
// lines of var/lib/rear/layout/disklayout.conf (`disk /dev/sda 21474836480 gpt`). Kept per
// host when a version is published, so match hints (match.ts) can compare a pending
// machine's disks without reading bundles. Pure: text in, disks out.

/** One `disk` line: kernel device, size in bytes, partition table type ('' when ReaR found none). */
export interface LayoutDisk {
  readonly device: string;
  readonly size: number;
  readonly label: string;
}

export interface DiskLayout {
  readonly disks: readonly LayoutDisk[];
  /** 1-based numbers of `disk` lines that could not be read (a size that is no byte count). */
  readonly skipped: readonly number[];
}

/** More disks than any host has: a file with more is cut here rather than stored whole. */
export const MAX_LAYOUT_DISKS = 256;

const DEVICE = /^\/dev\/[A-Za-z0-9._:/+-]{1,120}$/;

/**
 * Reads the `disk` lines. Comments (ReaR's format notes, its lsblk tree, and the entries it
 * disabled as `#disk ...`) and every other kind of line (part, lvmdev, fs, swap, ...) are
 * ignored; a malformed `disk` line is skipped and named, never fatal: the layout is advice.
 */
export function parseDiskLayout(text: string): DiskLayout {
  const disks: LayoutDisk[] = [];
  const skipped: number[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const fields = lines[i]!.trim().split(/\s+/);
    if (fields[0] !== 'disk') continue;
    const [, device, size, label] = fields;
    if (device === undefined || !DEVICE.test(device) || size === undefined || !/^\d{1,16}$/.test(size) || !Number.isSafeInteger(Number(size))) {
      skipped.push(i + 1);
      continue;
    }
    if (disks.length < MAX_LAYOUT_DISKS) disks.push({ device, size: Number(size), label: label ?? '' });
  }
  return { disks, skipped };
}

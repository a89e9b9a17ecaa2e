// Backup ids: sortable by time, safe as a path segment.
import { randomBytes } from "node:crypto";

const ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-([0-9a-f]{6})$/;

/** e.g. 20261124T031000Z-a1b2c3: UTC start time to the second, then 24 random bits. */
export function newBackupId(now: Date, random: () => string = () => randomBytes(3).toString("hex")): string {
  const iso = now.toISOString(); // 2026-11-24T03:10:00.000Z
  const compact = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return `${compact}-${random()}`;
}

export function isBackupId(id: string): boolean {
  return ID_RE.test(id);
}

export function backupIdTime(id: string): Date | undefined {
  const m = ID_RE.exec(id);
  if (!m) return undefined;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

// Label-based backup retention (hourly / daily / weekly / monthly / yearly).
//
// `applyRetention` is a pure function: no I/O, no clock, no environment, no
// module state. Given every backup that currently exists, a keep-count per
// label and an IANA time zone, it decides which backups hold which labels and
// which backups are kept or deleted.
//
// Periods (all computed in the given time zone; "local" = wall clock there).
// Each period is identified by a number, its ordinal, which also orders the
// periods from old to new:
//   hourly  - one real (elapsed) hour: the hour that began at the instant S
//             when the backup's local clock hour began, i.e. S = local date +
//             local hour, read with the UTC offset in force at the backup.
//             Ordinal = S in ms. Within one offset this is "local date + hour
//             + offset": the repeated hour of a DST fall-back (02:00-03:00 in
//             Europe/Berlin on the last Sunday of October, once at +02:00 and
//             once at +01:00) is TWO hourly periods, a fall-back day has 25
//             hourly periods and a spring-forward day 23. For whole-hour
//             offsets the hourly periods are exactly the UTC hours; for
//             Asia/Kolkata (+05:30) they start at hh:30 UTC.
//   daily   - local calendar date (ordinal: days since 1970-01-01).
//   weekly  - ISO 8601 week of the local date: Monday start, ISO week-year,
//             so 2024-12-30 is in 2025-W01 (ordinal: day number of Monday).
//   monthly - local calendar month (ordinal: year * 12 + month - 1).
//   yearly  - local calendar year (ordinal: year).
//
// Labels: a backup is the holder of a period for a label if it is the FIRST
// backup of that period (earliest time, ties broken by id in code-unit
// order). Per label only the holders of the newest N periods (N = policy
// count, "newest" by period ordinal) keep the label. While periods follow
// each other in time (see "Step-wise runs" below) the newest N periods are
// exactly the periods of the newest N holders, and because labels are
// recomputed from the whole list on every call this equals "each new backup
// gets the labels whose period it is the first of, and a label is dropped
// from the oldest holder once N newer periods have holders".
//
// Kept: holds a label, OR pinned, OR the newest backup overall, OR
// (transitively) the base of a kept backup. Everything else is deleted.
//
// Idempotence (exact, for every zone and history): applying retention again
// to the kept set keeps all of it, with the same labels and reasons. Removing
// backups never makes another backup the first of a period that already had
// a kept holder, the periods of the newest N ordinals all still have their
// (kept) holders, and a period that lost its holder is older than those N,
// so no label moves. (Ranking holders by their own time instead of by period
// ordinal would break this where a local date repeats non-contiguously, e.g.
// America/St_Johns until 2010 fell back from 00:01 to 23:01 the day before.)
//
// Step-wise runs (apply after each new backup, drop the deleted ones) end
// with the same kept set as one call over the full history, provided every
// period is one contiguous span of time whose ordinal order is time order,
// and incremental backups are only based on backups that still exist when
// they are taken. A scan of the tz data for 1900-2100 found local dates that
// repeat non-contiguously (a fall-back across midnight) only before 2011,
// e.g. America/St_Johns and Antarctica/Casey in 2010.

export const RETENTION_LABELS = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;
export type RetentionLabel = (typeof RETENTION_LABELS)[number];
/** Keep-count per label; absent, undefined or 0 = label not used. */
export type RetentionPolicy = Partial<Record<RetentionLabel, number>>;

export interface RetentionBackup {
  /** Unique id, sortable by time. */
  id: string;
  /** When the backup was taken (its start time). */
  time: Date;
  /** Kept regardless of labels. */
  pinned: boolean;
  /** Incremental backup builds on this one. */
  baseBackupId?: string | undefined;
}

export interface RetentionDecision {
  /** Backup id -> labels it holds now (every input backup has an entry, maybe []), oldest first. */
  labels: Map<string, RetentionLabel[]>;
  /** Ids kept, oldest first. */
  keep: string[];
  /** Ids to delete, oldest first. */
  delete: string[];
  /**
   * Why each kept backup is kept (only kept backups have an entry), oldest
   * first: label names (in RETENTION_LABELS order), then "pinned", then
   * "latest", then "base-of:<id>" for each kept backup built directly on it.
   */
  reasons: Map<string, string[]>;
}

const MS_PER_DAY = 86_400_000;

const MS_PER_HOUR = 3_600_000;

/** Local wall-clock parts of one instant in one time zone. */
export interface LocalParts {
  year: number;
  /** 1-12 */
  month: number;
  /** 1-31 */
  day: number;
  /** 0-23 */
  hour: number;
  /** UTC offset in seconds (local = UTC + offset). */
  offsetSeconds: number;
  /** Local date as days since 1970-01-01. */
  dayNumber: number;
  /** UTC instant (ms) at which the local clock hour of this instant began, at this instant's offset. */
  hourStartMs: number;
  /** ISO 8601 week-year. */
  isoWeekYear: number;
  /** ISO 8601 week, 1-53. */
  isoWeek: number;
  /** Day number (days since 1970-01-01) of the Monday starting the ISO week. */
  isoWeekMonday: number;
}

export type PeriodKeyer = (label: RetentionLabel, time: Date) => string;
export type PeriodOrdinalReader = (label: RetentionLabel, time: Date) => number;

function pad(n: number, width: number): string {
  const s = String(Math.abs(n)).padStart(width, "0");
  return n < 0 ? `-${s}` : s;
}

/** Parses Intl's "longOffset" name: "GMT", "GMT+01:00", "GMT-03:30", "GMT+00:53:28". */
function parseLongOffset(name: string, timeZone: string): number {
  if (name === "GMT" || name === "UTC") return 0;
  const m = /^(?:GMT|UTC)([-+\u2212])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?$/.exec(name);
  if (m === null) {
    throw new RangeError(`retention: cannot read the UTC offset "${name}" of time zone "${timeZone}"`);
  }
  const sign = m[1] === "+" ? 1 : -1;
  return sign * (Number(m[2]) * 3600 + Number(m[3] ?? "0") * 60 + Number(m[4] ?? "0"));
}

function createOffsetFormatter(timeZone: string): Intl.DateTimeFormat {
  if (typeof timeZone !== "string" || timeZone === "") {
    throw new RangeError(`retention: invalid time zone ${JSON.stringify(timeZone)}: expected an IANA name such as "UTC" or "Europe/Berlin"`);
  }
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "longOffset" });
  } catch (cause) {
    throw new RangeError(`retention: invalid time zone "${timeZone}": expected an IANA name such as "UTC" or "Europe/Berlin"`, { cause });
  }
}

/**
 * Returns a function computing local wall-clock parts in `timeZone`. The Intl
 * formatter is created once here, so create one per batch, not per backup.
 * Throws a RangeError naming the zone if it is not a valid time zone.
 */
export function createLocalPartsReader(timeZone: string): (time: Date) => LocalParts {
  // Fast path: "UTC" needs no Intl at all (building a formatter costs ~0.1 ms,
  // which dominates when retention runs after every backup).
  const fmt = timeZone === "UTC" || timeZone === "Etc/UTC" ? undefined : createOffsetFormatter(timeZone);
  return (time: Date): LocalParts => {
    const ms = time.getTime();
    if (!Number.isFinite(ms)) throw new TypeError("retention: invalid Date");
    let offsetSeconds = 0;
    if (fmt !== undefined) {
      // format() is several times faster than formatToParts(); with locale
      // en-US and only timeZoneName requested the text is "M/D/YYYY, GMT+HH:MM".
      const text = fmt.format(time);
      const gmtAt = text.lastIndexOf("GMT");
      if (gmtAt < 0) throw new RangeError(`retention: time zone "${timeZone}" reported no UTC offset ("${text}")`);
      offsetSeconds = parseLongOffset(text.slice(gmtAt), timeZone);
    }
    // Shift the instant by the offset: the UTC fields of the shifted Date are
    // the local wall-clock fields (this also handles years < 1000 and BC,
    // which Intl would print with an era).
    const local = new Date(ms + offsetSeconds * 1000);
    const localMs = local.getTime();
    if (!Number.isFinite(localMs)) throw new RangeError(`retention: time ${ms} is out of range in time zone "${timeZone}"`);
    const dayNumber = Math.floor(localMs / MS_PER_DAY); // days since 1970-01-01 (a Thursday)
    const weekday = (((dayNumber + 3) % 7) + 7) % 7; // Monday = 0 ... Sunday = 6
    const thursday = dayNumber - weekday + 3; // the ISO week belongs to the year of its Thursday
    const isoWeekYear = new Date(thursday * MS_PER_DAY).getUTCFullYear();
    const jan1 = new Date(0);
    jan1.setUTCFullYear(isoWeekYear, 0, 1); // setUTCFullYear: no 0-99 -> 19xx mapping
    const isoWeek = Math.floor((thursday - jan1.getTime() / MS_PER_DAY) / 7) + 1;
    const intoHour = ((localMs % MS_PER_HOUR) + MS_PER_HOUR) % MS_PER_HOUR;
    return {
      year: local.getUTCFullYear(),
      month: local.getUTCMonth() + 1,
      day: local.getUTCDate(),
      hour: local.getUTCHours(),
      offsetSeconds,
      dayNumber,
      hourStartMs: ms - intoHour,
      isoWeekYear,
      isoWeek,
      isoWeekMonday: thursday - 3,
    };
  };
}

/** The period's ordinal: identifies the period and orders periods old to new. */
function ordinalOf(label: RetentionLabel, p: LocalParts): number {
  switch (label) {
    case "hourly":
      return p.hourStartMs;
    case "daily":
      return p.dayNumber;
    case "weekly":
      return p.isoWeekMonday;
    case "monthly":
      return p.year * 12 + (p.month - 1);
    case "yearly":
      return p.year;
  }
}

/** Human-readable name of the period; one-to-one with its ordinal. */
function keyOf(label: RetentionLabel, p: LocalParts): string {
  const ymd = `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)}`;
  switch (label) {
    case "hourly":
      return new Date(p.hourStartMs).toISOString();
    case "daily":
      return ymd;
    case "weekly":
      return `${pad(p.isoWeekYear, 4)}-W${pad(p.isoWeek, 2)}`;
    case "monthly":
      return `${pad(p.year, 4)}-${pad(p.month, 2)}`;
    case "yearly":
      return pad(p.year, 4);
  }
}

/**
 * Returns a function naming the period of an instant for a label: hourly the
 * UTC start of the hour (e.g. "2025-10-26T01:00:00.000Z" for 02:30 local
 * after the Europe/Berlin fall-back), daily "2025-10-26", weekly "2025-W01",
 * monthly "2025-10", yearly "2025". Two instants are in the same period iff
 * their keys are equal.
 */
export function createPeriodKeyer(timeZone: string): PeriodKeyer {
  const read = createLocalPartsReader(timeZone);
  return (label, time) => keyOf(label, read(time));
}

/**
 * Returns a function giving the ordinal of the period of an instant for a
 * label (see the top of this file). Equal ordinals = same period; a larger
 * ordinal = a newer period.
 */
export function createPeriodOrdinalReader(timeZone: string): PeriodOrdinalReader {
  const read = createLocalPartsReader(timeZone);
  return (label, time) => ordinalOf(label, read(time));
}

function validatePolicy(policy: RetentionPolicy): Map<RetentionLabel, number> {
  if (typeof policy !== "object" || policy === null) {
    throw new TypeError("retention: policy must be an object of keep-counts per label");
  }
  const known: readonly string[] = RETENTION_LABELS;
  for (const key of Object.keys(policy)) {
    if (!known.includes(key)) {
      throw new TypeError(`retention: unknown label "${key}" in policy (known: ${RETENTION_LABELS.join(", ")})`);
    }
  }
  const counts = new Map<RetentionLabel, number>();
  for (const label of RETENTION_LABELS) {
    const n: unknown = policy[label];
    if (n === undefined) continue;
    if (typeof n !== "number") {
      throw new TypeError(`retention: keep-count for "${label}" must be a number, got ${typeof n}`);
    }
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`retention: keep-count for "${label}" must be a non-negative integer, got ${n}`);
    }
    if (n > 0) counts.set(label, n);
  }
  return counts;
}

function validateBackups(backups: readonly RetentionBackup[]): void {
  if (!Array.isArray(backups)) throw new TypeError("retention: backups must be an array");
  const seen = new Set<string>();
  for (const b of backups) {
    if (typeof b !== "object" || b === null) throw new TypeError("retention: every backup must be an object");
    if (typeof b.id !== "string" || b.id === "") {
      throw new TypeError(`retention: backup id must be a non-empty string, got ${JSON.stringify(b.id)}`);
    }
    if (seen.has(b.id)) throw new TypeError(`retention: duplicated backup id "${b.id}"`);
    seen.add(b.id);
    if (!(b.time instanceof Date) || !Number.isFinite(b.time.getTime())) {
      throw new TypeError(`retention: backup "${b.id}" has an invalid time`);
    }
    if (b.baseBackupId !== undefined && typeof b.baseBackupId !== "string") {
      throw new TypeError(`retention: backup "${b.id}" has a non-string baseBackupId`);
    }
  }
}

/** Oldest first: by time, ties by id (code-unit order). */
export function compareBackups(a: RetentionBackup, b: RetentionBackup): number {
  const d = a.time.getTime() - b.time.getTime();
  if (d !== 0) return d;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Decides which backups hold which labels and which are kept or deleted.
 * Input order does not matter. Throws a TypeError on duplicated ids or
 * malformed backups, a RangeError on an invalid time zone or a negative /
 * non-integer keep-count, and a TypeError on an unknown label in the policy.
 */
export function applyRetention(
  backups: readonly RetentionBackup[],
  policy: RetentionPolicy,
  timeZone: string,
): RetentionDecision {
  const counts = validatePolicy(policy);
  const readParts = createLocalPartsReader(timeZone); // validates the zone even for an empty list
  validateBackups(backups);

  const sorted = [...backups].sort(compareBackups);
  const byId = new Map<string, RetentionBackup>();
  for (const b of sorted) byId.set(b.id, b);

  const labels = new Map<string, RetentionLabel[]>();
  for (const b of sorted) labels.set(b.id, []);

  if (counts.size > 0) {
    // Local parts once per backup (one Intl call); every label's period ordinal is derived from them.
    const parts = sorted.map((b) => readParts(b.time));
    for (const label of RETENTION_LABELS) {
      const n = counts.get(label);
      if (n === undefined) continue;
      // Period ordinal -> its first backup (sorted is oldest first).
      const holderOf = new Map<number, string>();
      for (let i = 0; i < sorted.length; i++) {
        const ordinal = ordinalOf(label, parts[i] as LocalParts);
        if (!holderOf.has(ordinal)) holderOf.set(ordinal, (sorted[i] as RetentionBackup).id);
      }
      const newestPeriods = [...holderOf.keys()].sort((a, b) => b - a).slice(0, n);
      for (const ordinal of newestPeriods) {
        labels.get(holderOf.get(ordinal) as string)?.push(label); // RETENTION_LABELS order: outer loop
      }
    }
  }

  // Roots: labelled, pinned, or the newest backup.
  const kept = new Set<string>();
  const newest = sorted.at(-1);
  for (const b of sorted) {
    if ((labels.get(b.id)?.length ?? 0) > 0 || b.pinned === true || b === newest) kept.add(b.id);
  }
  // Close over incremental bases (cycle-safe: each id is added once).
  const work = [...kept];
  for (let id = work.pop(); id !== undefined; id = work.pop()) {
    const base = byId.get(id)?.baseBackupId;
    if (base === undefined || base === id || !byId.has(base) || kept.has(base)) continue;
    kept.add(base);
    work.push(base);
  }

  const reasons = new Map<string, string[]>();
  const keep: string[] = [];
  const del: string[] = [];
  for (const b of sorted) {
    if (!kept.has(b.id)) {
      del.push(b.id);
      continue;
    }
    keep.push(b.id);
    const r: string[] = [...(labels.get(b.id) ?? [])];
    if (b.pinned === true) r.push("pinned");
    if (b === newest) r.push("latest");
    reasons.set(b.id, r);
  }
  // "base-of:<dependent>" in oldest-first order of the dependents.
  for (const id of keep) {
    const base = byId.get(id)?.baseBackupId;
    if (base === undefined || base === id) continue;
    reasons.get(base)?.push(`base-of:${id}`);
  }

  return { labels, keep, delete: del, reasons };
}

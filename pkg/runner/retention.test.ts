import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  RETENTION_LABELS,
  applyRetention,
  compareBackups,
  createLocalPartsReader,
  createPeriodKeyer,
  createPeriodOrdinalReader,
  type RetentionBackup,
  type RetentionDecision,
  type RetentionLabel,
  type RetentionPolicy,
} from "./retention.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function at(iso: string): Date {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) throw new Error(`bad test date ${iso}`);
  return d;
}

function bk(id: string, time: Date | string, extra: Partial<Omit<RetentionBackup, "id" | "time">> = {}): RetentionBackup {
  return { id, time: typeof time === "string" ? at(time) : time, pinned: false, ...extra };
}

/** Backups every `stepMs` from `start`, ids = ISO time (sortable by time). */
function series(start: string, count: number, stepMs: number): RetentionBackup[] {
  const t0 = at(start).getTime();
  return Array.from({ length: count }, (_, i) => {
    const time = new Date(t0 + i * stepMs);
    return bk(time.toISOString(), time);
  });
}

/** Ids holding `label`, oldest first. */
function holders(d: RetentionDecision, label: RetentionLabel): string[] {
  return [...d.labels].filter(([, ls]) => ls.includes(label)).map(([id]) => id);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

describe("applyRetention: examples", () => {
  it("returns empty results for no backups", () => {
    const d = applyRetention([], { daily: 7 }, "UTC");
    expect(d.keep).toEqual([]);
    expect(d.delete).toEqual([]);
    expect(d.labels.size).toBe(0);
    expect(d.reasons.size).toBe(0);
  });

  it("hourly: 24 with 48 hourly backups keeps the newest 24", () => {
    const backups = series("2025-01-01T00:00:00Z", 48, HOUR);
    const ids = backups.map((b) => b.id);
    const d = applyRetention(backups, { hourly: 24 }, "UTC");
    expect(d.keep).toEqual(ids.slice(24));
    expect(d.delete).toEqual(ids.slice(0, 24));
    expect(holders(d, "hourly")).toEqual(ids.slice(24));
    for (const id of ids.slice(0, 24)) expect(d.labels.get(id)).toEqual([]);
    expect(d.labels.size).toBe(48);
    expect(d.reasons.get(ids[47] as string)).toEqual(["hourly", "latest"]);
    expect(d.reasons.get(ids[24] as string)).toEqual(["hourly"]);
    expect(d.reasons.has(ids[0] as string)).toBe(false);
  });

  it("daily: 7 with several backups per day keeps the first of each of the last 7 days plus the newest", () => {
    // 10 days, 4 backups a day at 00:15, 06:15, 12:15, 18:15 UTC.
    const backups = series("2025-03-01T00:15:00Z", 40, 6 * HOUR);
    const d = applyRetention(backups, { daily: 7 }, "UTC");
    const expected = [
      ...Array.from({ length: 7 }, (_, k) => `2025-03-${String(4 + k).padStart(2, "0")}T00:15:00.000Z`),
      "2025-03-10T18:15:00.000Z",
    ];
    expect(d.keep).toEqual(expected);
    expect(d.delete).toHaveLength(40 - 8);
    expect(holders(d, "daily")).toEqual(expected.slice(0, 7));
    expect(d.reasons.get("2025-03-10T18:15:00.000Z")).toEqual(["latest"]);
    expect(d.reasons.get("2025-03-10T00:15:00.000Z")).toEqual(["daily"]);
  });

  it("a pinned old backup survives", () => {
    const backups = series("2025-01-01T00:00:00Z", 48, HOUR);
    const first = backups[0] as RetentionBackup;
    backups[0] = { ...first, pinned: true };
    const d = applyRetention(backups, { hourly: 24 }, "UTC");
    expect(d.keep).toHaveLength(25);
    expect(d.keep[0]).toBe(first.id);
    expect(d.reasons.get(first.id)).toEqual(["pinned"]);
    expect(d.labels.get(first.id)).toEqual([]);
    expect(d.delete).not.toContain(first.id);
  });

  it("keeps a whole incremental chain under a kept backup", () => {
    const backups = [
      bk("a", "2025-01-01T00:00:00Z"),
      bk("b", "2025-01-01T01:00:00Z", { baseBackupId: "a" }),
      bk("c", "2025-01-01T02:00:00Z", { baseBackupId: "b", pinned: true }),
      bk("d", "2025-01-01T03:00:00Z", { baseBackupId: "c" }),
      bk("x", "2025-01-01T04:00:00Z"),
      bk("y", "2025-01-01T05:00:00Z"),
      bk("z", "2025-01-01T06:00:00Z", { baseBackupId: "y" }),
    ];
    const d = applyRetention(backups, { hourly: 1 }, "UTC");
    expect(d.keep).toEqual(["a", "b", "c", "y", "z"]);
    expect(d.delete).toEqual(["d", "x"]);
    expect(d.reasons.get("a")).toEqual(["base-of:b"]);
    expect(d.reasons.get("b")).toEqual(["base-of:c"]);
    expect(d.reasons.get("c")).toEqual(["pinned"]);
    expect(d.reasons.get("y")).toEqual(["base-of:z"]);
    expect(d.reasons.get("z")).toEqual(["hourly", "latest"]);
  });

  it("keeps the chain under the latest backup even with an empty policy", () => {
    const backups = [
      bk("full", "2025-01-01T00:00:00Z"),
      bk("inc1", "2025-01-01T01:00:00Z", { baseBackupId: "full" }),
      bk("other", "2025-01-01T01:30:00Z"),
      bk("inc2", "2025-01-01T02:00:00Z", { baseBackupId: "inc1" }),
    ];
    const d = applyRetention(backups, {}, "UTC");
    expect(d.keep).toEqual(["full", "inc1", "inc2"]);
    expect(d.delete).toEqual(["other"]);
    expect(d.reasons.get("inc2")).toEqual(["latest"]);
    expect(d.reasons.get("full")).toEqual(["base-of:inc1"]);
  });

  it("lists every kept dependent in base-of reasons", () => {
    const backups = [
      bk("full", "2025-01-01T00:00:00Z"),
      bk("i1", "2025-01-01T01:00:00Z", { baseBackupId: "full", pinned: true }),
      bk("i2", "2025-01-01T02:00:00Z", { baseBackupId: "full" }),
      bk("i3", "2025-01-01T03:00:00Z", { baseBackupId: "full" }),
    ];
    const d = applyRetention(backups, { hourly: 1 }, "UTC");
    expect(d.keep).toEqual(["full", "i1", "i3"]);
    expect(d.reasons.get("full")).toEqual(["base-of:i1", "base-of:i3"]);
  });

  it("ignores base ids that are not in the list, self references and cycles", () => {
    const backups = [
      bk("p", "2025-01-01T00:00:00Z", { baseBackupId: "q" }),
      bk("q", "2025-01-01T01:00:00Z", { baseBackupId: "p" }),
      bk("r", "2025-01-01T02:00:00Z", { baseBackupId: "r" }),
      bk("s", "2025-01-01T03:00:00Z", { baseBackupId: "gone" }),
    ];
    const d = applyRetention(backups, {}, "UTC");
    expect(d.keep).toEqual(["s"]);
    expect(d.reasons.get("s")).toEqual(["latest"]);
    const d2 = applyRetention(backups.map((b) => (b.id === "q" ? { ...b, pinned: true } : b)), {}, "UTC");
    expect(d2.keep).toEqual(["p", "q", "s"]);
    expect(d2.reasons.get("p")).toEqual(["base-of:q"]);
    expect(d2.reasons.get("q")).toEqual(["pinned", "base-of:p"]);
  });

  it("breaks time ties by id and does not depend on input order", () => {
    const backups = [
      bk("b", "2025-01-01T00:00:00Z"),
      bk("a", "2025-01-01T00:00:00Z"),
      bk("c", "2025-01-01T00:30:00Z"),
    ];
    const d = applyRetention(backups, { hourly: 5 }, "UTC");
    expect(d.keep).toEqual(["a", "c"]);
    expect(d.delete).toEqual(["b"]);
    expect([...d.labels.keys()]).toEqual(["a", "b", "c"]);
    const r = applyRetention([...backups].reverse(), { hourly: 5 }, "UTC");
    expect(r).toEqual(d);
  });

  it("a policy count of 0 means the label is not used", () => {
    const backups = series("2025-01-01T00:00:00Z", 5, DAY);
    const d = applyRetention(backups, { daily: 0, hourly: undefined }, "UTC");
    expect(d.keep).toEqual([backups[4]?.id]);
    for (const ls of d.labels.values()) expect(ls).toEqual([]);
  });

  it("Europe/Berlin spring forward (2025-03-30, 02:00 CET -> 03:00 CEST): daily and hourly labels", () => {
    // Every 30 minutes from 2025-03-29T22:00Z (23:00 CET) to 2025-03-30T03:30Z (05:30 CEST).
    const backups = series("2025-03-29T22:00:00Z", 12, HOUR / 2);
    const d = applyRetention(backups, { hourly: 100, daily: 100 }, "Europe/Berlin");
    // 2025-03-29T23:00Z is 00:00 local on the 30th: first backup of that local day.
    expect(holders(d, "daily")).toEqual(["2025-03-29T22:00:00.000Z", "2025-03-29T23:00:00.000Z"]);
    // Local hours 23, 00, 01, (02 does not exist), 03, 04, 05: one holder per real hour.
    expect(holders(d, "hourly")).toEqual([
      "2025-03-29T22:00:00.000Z",
      "2025-03-29T23:00:00.000Z",
      "2025-03-30T00:00:00.000Z",
      "2025-03-30T01:00:00.000Z",
      "2025-03-30T02:00:00.000Z",
      "2025-03-30T03:00:00.000Z",
    ]);
    const read = createLocalPartsReader("Europe/Berlin");
    expect(read(at("2025-03-30T00:59:59Z"))).toMatchObject({ day: 30, hour: 1, offsetSeconds: 3600 });
    expect(read(at("2025-03-30T01:00:00Z"))).toMatchObject({ day: 30, hour: 3, offsetSeconds: 7200 });
    const key = createPeriodKeyer("Europe/Berlin");
    expect(key("hourly", at("2025-03-30T00:59:59Z"))).toBe("2025-03-30T00:00:00.000Z");
    expect(key("hourly", at("2025-03-30T01:00:00Z"))).toBe("2025-03-30T01:00:00.000Z");
    // In UTC the day starts at 00:00Z instead.
    const u = applyRetention(backups, { daily: 100 }, "UTC");
    expect(holders(u, "daily")).toEqual(["2025-03-29T22:00:00.000Z", "2025-03-30T00:00:00.000Z"]);
  });

  it("Europe/Berlin spring-forward day has 23 hourly periods, fall-back day 25", () => {
    // Local 2025-03-30 runs from 2025-03-29T23:00Z to 2025-03-30T22:00Z (23 h).
    const spring = series("2025-03-29T23:00:00Z", 23 * 4, HOUR / 4);
    const ds = applyRetention(spring, { hourly: 1000, daily: 1000 }, "Europe/Berlin");
    expect(holders(ds, "hourly")).toHaveLength(23);
    expect(holders(ds, "daily")).toEqual(["2025-03-29T23:00:00.000Z"]);
    // Local 2025-10-26 runs from 2025-10-25T22:00Z to 2025-10-26T23:00Z (25 h).
    const fall = series("2025-10-25T22:00:00Z", 25 * 4, HOUR / 4);
    const df = applyRetention(fall, { hourly: 1000, daily: 1000 }, "Europe/Berlin");
    expect(holders(df, "hourly")).toHaveLength(25);
    expect(holders(df, "daily")).toEqual(["2025-10-25T22:00:00.000Z"]);
  });

  it("Europe/Berlin fall back (2025-10-26, 03:00 CEST -> 02:00 CET): the repeated hour is two hourly periods", () => {
    // Every 30 minutes from 2025-10-25T21:00Z (23:00 CEST) to 2025-10-26T02:30Z (03:30 CET).
    const backups = series("2025-10-25T21:00:00Z", 12, HOUR / 2);
    const d = applyRetention(backups, { hourly: 100, daily: 100 }, "Europe/Berlin");
    expect(holders(d, "daily")).toEqual(["2025-10-25T21:00:00.000Z", "2025-10-25T22:00:00.000Z"]);
    // Local 23, 00, 01, 02 (+02:00), 02 (+01:00), 03: each real hour is its own period.
    expect(holders(d, "hourly")).toEqual([
      "2025-10-25T21:00:00.000Z",
      "2025-10-25T22:00:00.000Z",
      "2025-10-25T23:00:00.000Z",
      "2025-10-26T00:00:00.000Z",
      "2025-10-26T01:00:00.000Z",
      "2025-10-26T02:00:00.000Z",
    ]);
    const read = createLocalPartsReader("Europe/Berlin");
    expect(read(at("2025-10-26T00:30:00Z"))).toMatchObject({ day: 26, hour: 2, offsetSeconds: 7200 });
    expect(read(at("2025-10-26T01:30:00Z"))).toMatchObject({ day: 26, hour: 2, offsetSeconds: 3600 });
    const key = createPeriodKeyer("Europe/Berlin");
    expect(key("hourly", at("2025-10-26T00:30:00Z"))).toBe("2025-10-26T00:00:00.000Z");
    expect(key("hourly", at("2025-10-26T01:30:00Z"))).toBe("2025-10-26T01:00:00.000Z");
    expect(key("daily", at("2025-10-26T01:30:00Z"))).toBe("2025-10-26");
    // hourly: 2 keeps exactly the newest two real hours (both local 02:xx and 03:xx).
    const two = applyRetention(backups, { hourly: 2 }, "Europe/Berlin");
    expect(holders(two, "hourly")).toEqual(["2025-10-26T01:00:00.000Z", "2025-10-26T02:00:00.000Z"]);
    expect(two.keep).toEqual(["2025-10-26T01:00:00.000Z", "2025-10-26T02:00:00.000Z", "2025-10-26T02:30:00.000Z"]);
  });

  it("uses ISO weeks at the year end (2024-12-30 is in 2025-W01)", () => {
    const key = createPeriodKeyer("UTC");
    expect(key("weekly", at("2024-12-29T12:00:00Z"))).toBe("2024-W52");
    expect(key("weekly", at("2024-12-30T00:00:00Z"))).toBe("2025-W01");
    expect(key("weekly", at("2025-01-05T23:59:59Z"))).toBe("2025-W01");
    expect(key("weekly", at("2025-01-06T00:00:00Z"))).toBe("2025-W02");
    expect(key("weekly", at("2020-12-31T12:00:00Z"))).toBe("2020-W53");
    expect(key("weekly", at("2021-01-03T12:00:00Z"))).toBe("2020-W53");
    expect(key("weekly", at("2021-01-04T00:00:00Z"))).toBe("2021-W01");
    expect(key("yearly", at("2024-12-30T00:00:00Z"))).toBe("2024");
    expect(key("monthly", at("2024-12-30T00:00:00Z"))).toBe("2024-12");

    const backups = ["2024-12-29", "2024-12-30", "2024-12-31", "2025-01-01", "2025-01-05", "2025-01-06"].map((day) =>
      bk(day, `${day}T12:00:00Z`),
    );
    const d = applyRetention(backups, { weekly: 10, yearly: 10 }, "UTC");
    expect(holders(d, "weekly")).toEqual(["2024-12-29", "2024-12-30", "2025-01-06"]);
    expect(holders(d, "yearly")).toEqual(["2024-12-29", "2025-01-01"]);
    expect(d.labels.get("2024-12-30")).toEqual(["weekly"]);
    expect(d.labels.get("2024-12-29")).toEqual(["weekly", "yearly"]);
    // weekly: 1 -> only 2025-W02's first backup (also the newest).
    expect(applyRetention(backups, { weekly: 1 }, "UTC").keep).toEqual(["2025-01-06"]);
  });

  it("ISO weeks are taken from the local date (Monday 00:30 in Berlin is Sunday 23:30 UTC)", () => {
    const t = at("2025-01-05T23:30:00Z");
    expect(createPeriodKeyer("UTC")("weekly", t)).toBe("2025-W01");
    expect(createPeriodKeyer("Europe/Berlin")("weekly", t)).toBe("2025-W02");
  });

  it("the time zone matters: 23:30 UTC is the next day in Europe/Berlin", () => {
    const backups = [
      bk("noon", "2025-06-10T12:00:00Z"),
      bk("late", "2025-06-10T23:30:00Z"),
      bk("morning", "2025-06-11T08:00:00Z"),
    ];
    const u = applyRetention(backups, { daily: 10 }, "UTC");
    expect(holders(u, "daily")).toEqual(["noon", "morning"]);
    expect(u.keep).toEqual(["noon", "morning"]);
    expect(u.delete).toEqual(["late"]);
    const b = applyRetention(backups, { daily: 10 }, "Europe/Berlin");
    expect(holders(b, "daily")).toEqual(["noon", "late"]);
    expect(b.keep).toEqual(["noon", "late", "morning"]);
    expect(b.reasons.get("morning")).toEqual(["latest"]);
    // Month and year boundaries move too.
    const key = createPeriodKeyer("Europe/Berlin");
    expect(key("monthly", at("2025-12-31T23:30:00Z"))).toBe("2026-01");
    expect(key("yearly", at("2025-12-31T23:30:00Z"))).toBe("2026");
    expect(createPeriodKeyer("America/New_York")("daily", at("2025-01-01T03:00:00Z"))).toBe("2024-12-31");
  });

  it("handles half-hour offsets (Asia/Kolkata): hourly periods follow local hours", () => {
    const key = createPeriodKeyer("Asia/Kolkata");
    // 05:29 and 05:31 UTC are 10:59 and 11:01 local: local hours 10 and 11 begin at 04:30Z and 05:30Z.
    expect(key("hourly", at("2025-01-01T05:29:00Z"))).toBe("2025-01-01T04:30:00.000Z");
    expect(key("hourly", at("2025-01-01T05:31:00Z"))).toBe("2025-01-01T05:30:00.000Z");
    const d = applyRetention(series("2025-01-01T04:00:00Z", 6, HOUR / 2), { hourly: 2 }, "Asia/Kolkata");
    expect(holders(d, "hourly")).toEqual(["2025-01-01T05:30:00.000Z", "2025-01-01T06:30:00.000Z"]);
  });

  it("ranks periods by calendar order, so a repeated local date stays idempotent (America/St_Johns 2010)", () => {
    // 2010-11-07T02:31Z: 00:01 NDT (-02:30) fell back to 23:01 NST (-03:30) on Nov 6,
    // so local Nov 6 occurs again after the first minute of Nov 7.
    const zone = "America/St_Johns";
    const backups = [
      bk("a", "2010-11-06T14:30:00Z"), // Nov 6 12:00 NDT: first of Nov 6
      bk("b", "2010-11-07T02:30:30Z"), // Nov 7 00:00:30 NDT: first of Nov 7
      bk("c", "2010-11-07T03:00:00Z", { pinned: true }), // Nov 6 23:30 NST: Nov 6 again
      bk("d", "2010-11-07T15:30:00Z"), // Nov 7 12:00 NST
    ];
    const key = createPeriodKeyer(zone);
    expect(backups.map((b) => key("daily", b.time))).toEqual(["2010-11-06", "2010-11-07", "2010-11-06", "2010-11-07"]);
    const d = applyRetention(backups, { daily: 1 }, zone);
    expect(holders(d, "daily")).toEqual(["b"]);
    expect(d.keep).toEqual(["b", "c", "d"]);
    // Without "a", "c" is the first of Nov 6, but Nov 6 is still older than Nov 7.
    const again = applyRetention(backups.filter((b) => d.keep.includes(b.id)), { daily: 1 }, zone);
    expect(again.keep).toEqual(["b", "c", "d"]);
    expect(holders(again, "daily")).toEqual(["b"]);
  });

  it("reads the offset of every supported time zone (incl. historic second offsets)", () => {
    const instants = ["1900-06-15T12:00:00Z", "1985-03-31T01:30:00Z", "2025-07-01T22:45:00Z"].map(at);
    for (const zone of Intl.supportedValuesOf("timeZone")) {
      const key = createPeriodKeyer(zone);
      const fmt = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
      for (const t of instants) expect(`${zone} ${key("daily", t)}`).toBe(`${zone} ${fmt.format(t)}`);
    }
    // Berlin local mean time was +00:53:28: local 12:53:28, the local hour began at 11:06:32Z.
    expect(createLocalPartsReader("Europe/Berlin")(at("1890-01-01T12:00:00Z"))).toMatchObject({ hour: 12, offsetSeconds: 3208 });
    expect(createPeriodKeyer("Europe/Berlin")("hourly", at("1890-01-01T12:00:00Z"))).toBe("1890-01-01T11:06:32.000Z");
  });

  it("rejects duplicated ids with a TypeError", () => {
    const backups = [bk("x", "2025-01-01T00:00:00Z"), bk("x", "2025-01-01T01:00:00Z")];
    expect(() => applyRetention(backups, { daily: 1 }, "UTC")).toThrow(TypeError);
    expect(() => applyRetention(backups, { daily: 1 }, "UTC")).toThrow(/duplicated backup id "x"/);
  });

  it("rejects an invalid time zone with a RangeError naming it", () => {
    expect(() => applyRetention([], { daily: 1 }, "Mars/Olympus_Mons")).toThrow(RangeError);
    expect(() => applyRetention([], { daily: 1 }, "Mars/Olympus_Mons")).toThrow(/Mars\/Olympus_Mons/);
    expect(() => applyRetention([bk("a", "2025-01-01T00:00:00Z")], {}, "")).toThrow(RangeError);
  });

  it("rejects negative, non-integer and non-number counts and unknown labels", () => {
    const one = [bk("a", "2025-01-01T00:00:00Z")];
    expect(() => applyRetention(one, { daily: -1 }, "UTC")).toThrow(RangeError);
    expect(() => applyRetention(one, { hourly: 1.5 }, "UTC")).toThrow(RangeError);
    expect(() => applyRetention(one, { weekly: Number.NaN }, "UTC")).toThrow(RangeError);
    expect(() => applyRetention(one, { monthly: Number.POSITIVE_INFINITY }, "UTC")).toThrow(RangeError);
    expect(() => applyRetention(one, { yearly: "3" as unknown as number }, "UTC")).toThrow(TypeError);
    expect(() => applyRetention(one, { dayly: 3 } as unknown as RetentionPolicy, "UTC")).toThrow(/unknown label "dayly"/);
  });

  it("rejects invalid times", () => {
    expect(() => applyRetention([bk("a", new Date(Number.NaN))], {}, "UTC")).toThrow(TypeError);
  });

  it("decides a year of hourly backups in linear-ish time (well under a second idle; the bound only catches a quadratic slip)", () => {
    const backups = series("2025-01-01T00:00:00Z", 8760, HOUR);
    for (const zone of ["UTC", "Europe/Berlin"]) {
      const t0 = performance.now();
      const d = applyRetention(backups, { hourly: 24, daily: 7, weekly: 4, monthly: 12 }, zone);
      const ms = performance.now() - t0;
      expect(d.keep.length + d.delete.length).toBe(8760);
      expect(ms).toBeLessThan(5000);
    }
  });
});

describe("applyRetention: a year of hourly backups, step by step", () => {
  it("keeps exactly the last 24 hours, 7 days, 4 ISO weeks and 12 months", () => {
    const policy: RetentionPolicy = { hourly: 24, daily: 7, weekly: 4, monthly: 12 };
    const start = Date.UTC(2025, 0, 1);
    const count = 8760;
    let present: RetentionBackup[] = [];
    for (let i = 0; i < count; i++) {
      const time = new Date(start + i * HOUR);
      present.push(bk(time.toISOString(), time));
      const d = applyRetention(present, policy, "UTC");
      const del = new Set(d.delete);
      if (del.has(time.toISOString())) throw new Error(`step ${i}: newest backup deleted`);
      present = present.filter((b) => !del.has(b.id));
    }

    // Expected, from plain UTC arithmetic (no Intl).
    const last = start + (count - 1) * HOUR; // 2025-12-31T23:00Z, a Wednesday
    const lastMidnight = Math.floor(last / DAY) * DAY;
    const lastMonday = lastMidnight - ((new Date(lastMidnight).getUTCDay() + 6) % 7) * DAY;
    const expHourly = Array.from({ length: 24 }, (_, k) => last - k * HOUR);
    const expDaily = Array.from({ length: 7 }, (_, k) => lastMidnight - k * DAY);
    const expWeekly = Array.from({ length: 4 }, (_, k) => lastMonday - k * 7 * DAY);
    const expMonthly = Array.from({ length: 12 }, (_, k) => Date.UTC(2025, 11 - k, 1));
    expect(iso(last)).toBe("2025-12-31T23:00:00.000Z");
    expect(iso(lastMonday)).toBe("2025-12-29T00:00:00.000Z");
    expect(expWeekly.map(iso)).toEqual([
      "2025-12-29T00:00:00.000Z",
      "2025-12-22T00:00:00.000Z",
      "2025-12-15T00:00:00.000Z",
      "2025-12-08T00:00:00.000Z",
    ]);
    const expected = [...new Set([...expHourly, ...expDaily, ...expWeekly, ...expMonthly])].sort((a, b) => a - b).map(iso);
    // 24 hourly (all of Dec 31) + 6 more daily (Dec 25-30) + 3 more weekly (Dec 8, 15, 22) + 12 monthly.
    expect(expected).toHaveLength(24 + 6 + 3 + 12);

    expect(present.map((b) => b.id)).toEqual(expected);

    // Labels held at the end, per backup.
    const final = applyRetention(present, policy, "UTC");
    expect(final.delete).toEqual([]);
    expect(final.keep).toEqual(expected);
    const sets: [RetentionLabel, Set<string>][] = [
      ["hourly", new Set(expHourly.map(iso))],
      ["daily", new Set(expDaily.map(iso))],
      ["weekly", new Set(expWeekly.map(iso))],
      ["monthly", new Set(expMonthly.map(iso))],
    ];
    for (const id of expected) {
      expect(final.labels.get(id)).toEqual(sets.filter(([, s]) => s.has(id)).map(([l]) => l));
    }
    expect(final.labels.get("2025-01-01T00:00:00.000Z")).toEqual(["monthly"]);
    expect(final.labels.get("2025-12-29T00:00:00.000Z")).toEqual(["daily", "weekly"]);
    expect(final.labels.get("2025-12-01T00:00:00.000Z")).toEqual(["monthly"]);
    expect(final.labels.get("2025-12-31T00:00:00.000Z")).toEqual(["hourly", "daily"]);
    expect(final.reasons.get("2025-12-31T23:00:00.000Z")).toEqual(["hourly", "latest"]);

    // The step-wise result equals one stateless call over the full history.
    const all = series("2025-01-01T00:00:00Z", count, HOUR);
    expect(applyRetention(all, policy, "UTC").keep).toEqual(expected);
  }, 60_000);
});

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

const ZONES = [
  "UTC",
  "Europe/Berlin",
  "America/New_York",
  "America/St_Johns",
  "Asia/Kolkata",
  "Australia/Lord_Howe",
  "Pacific/Chatham",
] as const;

const zoneArb = fc.constantFrom(...ZONES);

const countArb = fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 40 }));
const policyArb: fc.Arbitrary<RetentionPolicy> = fc.record(
  { hourly: countArb, daily: countArb, weekly: countArb, monthly: countArb, yearly: countArb },
  { requiredKeys: [] },
);

interface History {
  backups: RetentionBackup[]; // oldest first (time, id)
  shuffled: RetentionBackup[];
}

// Times are slots over a span (so ties and same-period backups are common),
// starting anywhere in 2024-2025 (so DST transitions are crossed); base links
// point to strictly earlier backups.
const historyArb: fc.Arbitrary<History> = fc
  .record({
    start: fc.integer({ min: Date.UTC(2024, 0, 1), max: Date.UTC(2026, 0, 1) }),
    span: fc.constantFrom(3 * HOUR, 2 * DAY, 20 * DAY, 200 * DAY, 900 * DAY),
    entries: fc.array(
      fc.record({
        slot: fc.integer({ min: 0, max: 300 }),
        pinned: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
        base: fc.option(fc.nat(), { freq: 2 }),
      }),
      { maxLength: 60 },
    ),
  })
  .chain(({ start, span, entries }) => {
    const raw = entries.map((e, i) => ({
      id: `b${String(i).padStart(3, "0")}`,
      time: new Date(start + Math.round((e.slot * span) / 300)),
      pinned: e.pinned,
      base: e.base,
    }));
    const sorted = [...raw].sort(compareBackups);
    const backups: RetentionBackup[] = sorted.map((b, i) => {
      const baseIndex = b.base === null || i === 0 ? undefined : b.base % i;
      const baseBackupId = baseIndex === undefined ? undefined : sorted[baseIndex]?.id;
      return { id: b.id, time: b.time, pinned: b.pinned, baseBackupId };
    });
    return fc
      .shuffledSubarray(backups, { minLength: backups.length, maxLength: backups.length })
      .map((shuffled) => ({ backups, shuffled }));
  });

function baseClosure(byId: Map<string, RetentionBackup>, id: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>([id]);
  for (let cur = byId.get(id)?.baseBackupId; cur !== undefined && byId.has(cur) && !seen.has(cur); cur = byId.get(cur)?.baseBackupId) {
    seen.add(cur);
    out.push(cur);
  }
  return out;
}

describe("applyRetention: properties", () => {
  const runs = { numRuns: 300 };

  it("never deletes pinned, newest or depended-on backups; keep/delete partition the input", () => {
    fc.assert(
      fc.property(historyArb, policyArb, zoneArb, ({ backups, shuffled }, policy, zone) => {
        const d = applyRetention(shuffled, policy, zone);
        const ids = backups.map((b) => b.id);
        const keep = new Set(d.keep);
        const del = new Set(d.delete);
        // Partition, oldest first.
        expect([...d.keep, ...d.delete].sort()).toEqual([...ids].sort());
        expect(d.keep.filter((id) => del.has(id))).toEqual([]);
        expect(d.keep).toEqual(ids.filter((id) => keep.has(id)));
        expect(d.delete).toEqual(ids.filter((id) => del.has(id)));
        expect([...d.labels.keys()]).toEqual(ids);
        expect([...d.reasons.keys()]).toEqual(d.keep);
        // Pinned and newest are kept.
        for (const b of backups) if (b.pinned) expect(keep.has(b.id)).toBe(true);
        if (backups.length > 0) expect(keep.has(backups.at(-1)?.id as string)).toBe(true);
        // The transitive base chain of every kept backup is kept.
        const byId = new Map(backups.map((b) => [b.id, b]));
        for (const id of d.keep) for (const base of baseClosure(byId, id)) expect(keep.has(base)).toBe(true);
        // Every kept backup has a reason, every deleted one has none to be kept.
        for (const id of d.keep) expect(d.reasons.get(id)?.length ?? 0).toBeGreaterThan(0);
        for (const id of d.delete) {
          expect(d.labels.get(id)).toEqual([]);
          expect(byId.get(id)?.pinned).toBe(false);
        }
      }),
      runs,
    );
  });

  it("labels: each label is held by the first backups of the newest N periods (at most N)", () => {
    fc.assert(
      fc.property(historyArb, policyArb, zoneArb, ({ backups, shuffled }, policy, zone) => {
        const d = applyRetention(shuffled, policy, zone);
        const key = createPeriodKeyer(zone);
        const ordinal = createPeriodOrdinalReader(zone);
        for (const label of RETENTION_LABELS) {
          const n = policy[label] ?? 0;
          // Naive O(n^2) reference: first of its period = no earlier backup shares its key.
          const firsts = backups.filter((b) =>
            backups.every((c) => c === b || key(label, c.time) !== key(label, b.time) || compareBackups(c, b) > 0),
          );
          // Newest N periods; in these zones and years period order is time order,
          // so this is also "the newest N holders".
          const byPeriod = [...firsts].sort((x, y) => ordinal(label, x.time) - ordinal(label, y.time));
          expect(byPeriod).toEqual(firsts);
          const expected = n === 0 ? [] : firsts.slice(-n).map((b) => b.id);
          const got = holders(d, label);
          expect(got).toEqual(expected);
          expect(got.length).toBeLessThanOrEqual(n);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("does not depend on input order", () => {
    fc.assert(
      fc.property(historyArb, policyArb, zoneArb, ({ backups, shuffled }, policy, zone) => {
        expect(applyRetention(shuffled, policy, zone)).toEqual(applyRetention(backups, policy, zone));
      }),
      runs,
    );
  });

  it("is idempotent: retention over the kept set keeps all of it with the same labels", () => {
    fc.assert(
      fc.property(historyArb, policyArb, zoneArb, ({ shuffled }, policy, zone) => {
        const d = applyRetention(shuffled, policy, zone);
        const keep = new Set(d.keep);
        const again = applyRetention(
          shuffled.filter((b) => keep.has(b.id)),
          policy,
          zone,
        );
        expect(again.delete).toEqual([]);
        expect(again.keep).toEqual(d.keep);
        for (const id of d.keep) expect(again.labels.get(id)).toEqual(d.labels.get(id));
        expect(again.reasons).toEqual(d.reasons);
      }),
      runs,
    );
  });

  it("step-wise: the newest backup always survives, and the end result equals one call over the full history", () => {
    const stepsArb = fc.record({
      start: fc.integer({ min: Date.UTC(2024, 0, 1), max: Date.UTC(2026, 0, 1) }),
      steps: fc.array(
        fc.record({
          gap: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 * HOUR }), fc.integer({ min: 1, max: 10 * DAY })),
          pinned: fc.integer({ min: 0, max: 14 }).map((x) => x === 0),
          base: fc.option(fc.nat(), { freq: 2 }),
        }),
        { minLength: 1, maxLength: 80 },
      ),
    });
    fc.assert(
      fc.property(stepsArb, policyArb, zoneArb, ({ start, steps }, policy, zone) => {
        let t = start;
        let present: RetentionBackup[] = [];
        const all: RetentionBackup[] = [];
        steps.forEach((s, i) => {
          t += s.gap;
          // Incremental backups only build on backups that still exist.
          const base = s.base === null || present.length === 0 ? undefined : present[s.base % present.length]?.id;
          const b: RetentionBackup = { id: `s${String(i).padStart(3, "0")}`, time: new Date(t), pinned: s.pinned, baseBackupId: base };
          all.push(b);
          present.push(b);
          const d = applyRetention(present, policy, zone);
          expect(d.keep).toContain(b.id);
          expect(d.reasons.get(b.id)).toContain("latest");
          const del = new Set(d.delete);
          present = present.filter((p) => !del.has(p.id));
        });
        expect(present.map((b) => b.id)).toEqual(applyRetention(all, policy, zone).keep);
      }),
      { numRuns: 200 },
    );
  });

  it("period keys agree with Intl's own local date (independent ISO week formula)", () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2040, 0, 1) }), zoneArb, (ms, zone) => {
        const time = new Date(ms);
        const key = createPeriodKeyer(zone);
        const ymd = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(time);
        expect(key("daily", time)).toBe(ymd);
        expect(key("monthly", time)).toBe(ymd.slice(0, 7));
        expect(key("yearly", time)).toBe(ymd.slice(0, 4));
        // Hourly: the period starts when the local clock hour began.
        const hms = new Intl.DateTimeFormat("en-US", {
          timeZone: zone,
          hour: "2-digit",
          minute: "2-digit",
          second: "2-digit",
          hourCycle: "h23",
        }).formatToParts(time);
        const field = (type: string): number => Number(hms.find((p) => p.type === type)?.value);
        expect(createLocalPartsReader(zone)(time).hour).toBe(field("hour"));
        const intoHour = (field("minute") * 60 + field("second")) * 1000 + (ms % 1000);
        expect(key("hourly", time)).toBe(new Date(ms - intoHour).toISOString());
        // Keys and ordinals identify the same periods.
        const ord = createPeriodOrdinalReader(zone);
        const other = new Date(ms + (ms % 7) * 20 * 60_000); // 0-2 hours later
        for (const label of RETENTION_LABELS) {
          expect(key(label, time) === key(label, other)).toBe(ord(label, time) === ord(label, other));
          expect(ord(label, time)).toBeLessThanOrEqual(ord(label, other));
        }
        // ISO week by the ordinal-date formula: week = floor((ordinal - weekday + 10) / 7).
        const [y, m, dd] = ymd.split("-").map(Number) as [number, number, number];
        const weekday = ((new Date(Date.UTC(y, m - 1, dd)).getUTCDay() + 6) % 7) + 1; // Mon=1..Sun=7
        const ordinal = (Date.UTC(y, m - 1, dd) - Date.UTC(y, 0, 1)) / DAY + 1;
        const weeksIn = (year: number): number => {
          const p = (yy: number): number => (yy + Math.floor(yy / 4) - Math.floor(yy / 100) + Math.floor(yy / 400)) % 7;
          return p(year) === 4 || p(year - 1) === 3 ? 53 : 52;
        };
        let wy = y;
        let w = Math.floor((ordinal - weekday + 10) / 7);
        if (w < 1) {
          wy = y - 1;
          w = weeksIn(wy);
        } else if (w > weeksIn(y)) {
          wy = y + 1;
          w = 1;
        }
        expect(key("weekly", time)).toBe(`${wy}-W${String(w).padStart(2, "0")}`);
      }),
      { numRuns: 1000 },
    );
  });
});

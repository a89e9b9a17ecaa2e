import { describe, expect, it } from "vitest";
import { cronProblems, missedRun, previousTick } from "./schedule.ts";

describe("schedule", () => {
  it("validates cron expressions with field-level problems", () => {
    expect(cronProblems("0 * * * *")).toEqual([]);
    expect(cronProblems("61 * * * *").length).toBeGreaterThan(0);
  });

  it("finds the previous tick in the schedule's time zone", () => {
    // 02:00 every day in Europe/Berlin is 01:00 UTC in winter.
    const now = new Date("2026-01-15T12:34:56Z");
    expect(previousTick("0 2 * * *", "Europe/Berlin", now)?.toISOString()).toBe("2026-01-15T01:00:00.000Z");
    expect(previousTick("0 2 * * *", "UTC", now)?.toISOString()).toBe("2026-01-15T02:00:00.000Z");
    expect(previousTick("*/15 * * * *", "UTC", now)?.toISOString()).toBe("2026-01-15T12:30:00.000Z");
  });

  it("detects a missed run after a restart", () => {
    const now = new Date("2026-01-15T12:34:56Z");
    expect(missedRun("0 * * * *", "UTC", new Date("2026-01-15T12:00:05Z"), now)).toBe(false);
    expect(missedRun("0 * * * *", "UTC", new Date("2026-01-15T11:00:05Z"), now)).toBe(true);
    expect(missedRun("0 3 * * *", "UTC", new Date("2026-01-15T03:00:01Z"), now)).toBe(false);
    expect(missedRun("0 3 * * *", "UTC", new Date("2026-01-14T03:00:01Z"), now)).toBe(true);
    expect(missedRun("0 3 * * *", "UTC", undefined, now)).toBe(true);
  });
});

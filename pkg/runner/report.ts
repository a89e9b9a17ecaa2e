// Plain-text reports for the command line (pure: data in, text out).
import type { VerifiedTable, VerifyResult } from "../backupengine/types.ts";

function pad(cells: string[][], rightAligned: ReadonlySet<number>): string {
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const n = (x: number) => x.toLocaleString("en-US");

/**
 * The table `backup-runner verify` prints: one line per table with rows
 * expected and found, bytes stored and uncompressed, and OK or why not;
 * then the objects that hold no table's data, if any is damaged.
 */
export function formatVerifyReport(backupId: string, r: Pick<VerifyResult, "tables" | "otherObjects">): string {
  const head = ["TABLE", "ROWS EXPECTED", "ROWS FOUND", "STORED BYTES", "UNCOMPRESSED BYTES", "RESULT"];
  const label = (t: VerifiedTable) => `${t.database}.${t.name}${t.host ? ` (${t.host})` : ""}`;
  const rows = r.tables.map((t: VerifiedTable) =>
    t.contentChecked === false
      ? [label(t), n(t.expectedRows), "-", n(t.bytes), "-", t.ok ? "OK (stored bytes only: encrypted, no identity)" : `DAMAGED: ${t.error ?? "not whole"}`]
      : [label(t), n(t.expectedRows), n(t.rows), n(t.bytes), n(t.uncompressedBytes), t.ok ? "OK" : `DAMAGED: ${t.error ?? "not whole"}`],
  );
  const lines = [`backup ${backupId}: ${r.tables.length} table(s) with data`, rows.length ? pad([head, ...rows], new Set([1, 2, 3, 4])) : "(no table holds data)"];
  const badObjects = r.otherObjects.filter((o) => !o.ok);
  if (badObjects.length) lines.push("", pad([["OBJECT", "RESULT"], ...badObjects.map((o) => [o.name, `DAMAGED: ${o.error ?? "not whole"}`])], new Set()));
  else if (r.otherObjects.length) lines.push(`${r.otherObjects.length} other object(s) (DDL and metadata): OK`);
  return `${lines.join("\n")}\n`;
}

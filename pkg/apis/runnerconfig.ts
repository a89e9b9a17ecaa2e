// The runner's whole configuration: what the controller writes into the
// runner Secret (config.json), with every referenced secret resolved.
import { z } from "zod";
import { definitionRunnerConfig } from "./backupdefinition.ts";
import { storageRunnerConfig } from "./storagelocation.ts";
import { formatIssues } from "./common.ts";

export const runnerConfig = z.strictObject({
  definition: definitionRunnerConfig.describe("The BackupDefinition, with the ClickHouse password resolved"),
  storage: storageRunnerConfig.describe("The StorageLocation, with the S3 credentials resolved"),
  api: z
    .strictObject({
      token: z.string().min(16, "must be at least 16 characters").describe("Bearer token every /api/v1 request must present"),
      port: z.int().min(1).max(65535).default(8080).describe("Port of the HTTP API, probes and metrics"),
      host: z.string().default("0.0.0.0").describe("Address to listen on"),
    })
    .describe("HTTP API of the runner"),
});
export type RunnerConfig = z.infer<typeof runnerConfig>;
export type RunnerConfigInput = z.input<typeof runnerConfig>;

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[], cause?: unknown) {
    super(`invalid runner config ${source}:\n  ${problems.join("\n  ")}`, { cause });
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Validates parsed JSON; throws ConfigError listing every problem by field path, never a value. */
export function parseRunnerConfig(input: unknown, source = "(inline)"): RunnerConfig {
  const r = runnerConfig.safeParse(input);
  if (!r.success) throw new ConfigError(source, formatIssues(r.error));
  return r.data;
}

/** Parses JSON text; a syntax error names the source but not the content. */
export function parseRunnerConfigText(text: string, source: string): RunnerConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err: unknown) {
    throw new ConfigError(source, ["(root): not valid JSON"], err instanceof Error ? new Error(err.name) : undefined);
  }
  return parseRunnerConfig(json, source);
}
